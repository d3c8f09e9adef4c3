"""Shape masks of the toy world's thing categories.

Each shape is a function ``(u, v) -> bool mask`` of local coordinates (arrays of equal shape), where
``(u, v)`` are pixel centres rotated into the object's frame and scaled so that the object's
bounding circle is the unit circle. Every shape lies inside the unit circle.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _disc(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 0.92


def _regular_polygon(sides: int, radius: float = 0.96) -> ShapeFn:
    normals = [(np.cos(a), np.sin(a)) for a in 2 * np.pi * (np.arange(sides) + 0.5) / sides]
    apothem = radius * np.cos(np.pi / sides)

    def polygon(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        inside = np.ones(u.shape, dtype=bool)
        for nx, ny in normals:
            inside &= u * nx + v * ny <= apothem
        return inside

    return polygon


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= 0.92) & ((u - 0.45) ** 2 + v * v > 0.62)


def _capsule(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    along = np.clip(u, -0.62, 0.62)
    return (u - along) ** 2 + v * v <= 0.36**2


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.68


def _cluster(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    centres = ((0.0, -0.5), (-0.45, 0.3), (0.45, 0.3), (0.0, 0.1))
    return np.logical_or.reduce([(u - cu) ** 2 + (v - cv) ** 2 <= 0.43**2 for cu, cv in centres])


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    angle = np.arctan2(v, u) * 5 / (2 * np.pi)
    triangle_wave = np.abs((angle % 1.0) * 2 - 1)  # 1 at the points, 0 between them
    return np.sqrt(u * u + v * v) <= 0.45 + 0.52 * triangle_wave


def _oval(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    half_width = 0.64 * (1 - 0.18 * v)  # egg: wider at the bottom
    return (u / half_width) ** 2 + (v / 0.92) ** 2 <= 1


def _ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u / 0.95) ** 2 + (v / 0.58) ** 2 <= 1


SHAPES: dict[str, ShapeFn] = {
    "disc": _disc,
    "hexagon": _regular_polygon(6),
    "octagon": _regular_polygon(8),
    "triangle": _regular_polygon(3),
    "crescent": _crescent,
    "capsule": _capsule,
    "square": _square,
    "cluster": _cluster,
    "star": _star,
    "oval": _oval,
    "ellipse": _ellipse,
}
