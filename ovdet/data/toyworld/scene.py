"""Sampling and rendering of one toy-world scene: stuff regions, things on top, and a caption.

A scene is fully determined by the ``numpy.random.Generator`` it is drawn from, so
``render_scene(np.random.default_rng([seed, index]))`` is reproducible image by image, whatever
order or process the images are made in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .captions import make_caption
from .categories import STUFF_CATEGORIES, THING_CATEGORIES, StuffCategory, ThingCategory
from .shapes import SHAPES

OBJECT_SIZE_RANGE = (0.28, 0.46)  # object diameter as a fraction of the image side
MIN_VISIBLE_FRACTION = 0.55  # an occluded object keeps at least this much of its area
PLACEMENT_TRIES = 20


@dataclass
class Segment:
    """One labelled region: ``category_id`` and a boolean ``mask`` of shape (H, W)."""

    category_id: int
    mask: np.ndarray


@dataclass
class Scene:
    """``image``: (H, W, 3) uint8 RGB; ``things``: instances in drawing order (visible masks, never
    empty); ``stuff``: one segment per stuff region, masks disjoint from each other and from the
    things, together with them covering every pixel; ``caption``: one noisy caption."""

    image: np.ndarray
    things: list[Segment]
    stuff: list[Segment]
    caption: str


def render_scene(rng: np.random.Generator, size: int = 128,
                 num_objects: tuple[int, int] = (1, 3)) -> Scene:
    """Draw a scene of ``size`` x ``size`` pixels with between ``num_objects[0]`` and
    ``num_objects[1]`` things (fewer only when occlusion rules leave no room)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    image, stuff_labels, stuff_ids = _render_background(rng, size, ys, xs)
    count = int(rng.integers(num_objects[0], num_objects[1] + 1))
    things: list[Segment] = []
    full_areas: list[int] = []
    for _ in range(count):
        category = THING_CATEGORIES[int(rng.integers(len(THING_CATEGORIES)))]
        for _ in range(PLACEMENT_TRIES):
            mask, placement = _place_shape(rng, category, size, ys, xs)
            if _occlusion_ok(things, full_areas, mask):
                break
        else:
            continue
        for thing in things:
            thing.mask &= ~mask
        _paint_thing(rng, image, mask, category, placement, ys, xs)
        things.append(Segment(category.id, mask))
        full_areas.append(int(mask.sum()))
    occupied = np.logical_or.reduce([t.mask for t in things]) if things else np.zeros_like(stuff_labels, bool)
    stuff = [Segment(cid, (stuff_labels == cid) & ~occupied) for cid in stuff_ids]
    stuff = [s for s in stuff if s.mask.any()]
    caption = make_caption(rng, [t.category_id for t in things], [s.category_id for s in stuff])
    return Scene(np.clip(image, 0, 255).astype(np.uint8), things, stuff, caption)


def _render_background(rng: np.random.Generator, size: int, ys: np.ndarray, xs: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Returns a float (H, W, 3) image, an (H, W) map of stuff ids, and the ids used top to bottom."""
    regions = int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2]))
    chosen = [STUFF_CATEGORIES[i] for i in rng.choice(len(STUFF_CATEGORIES), regions, replace=False)]
    chosen.sort(key=lambda c: c.name != "sky")  # the sky, when present, is on top
    labels = np.full((size, size), chosen[-1].id, dtype=np.int32)
    boundaries = np.sort(rng.uniform(0.25, 0.75, regions - 1)) * size
    for category, level in zip(reversed(chosen[:-1]), boundaries[::-1]):
        wave = rng.uniform(0, 0.06 * size) * np.sin(xs * rng.uniform(0.02, 0.1) + rng.uniform(0, 6.3))
        labels[ys < level + wave] = category.id
    image = np.zeros((size, size, 3), dtype=np.float32)
    for category in chosen:
        region = labels == category.id
        image[region] = _texture(rng, category, ys, xs)[region]
    return image, labels, [c.id for c in chosen]


def _texture(rng: np.random.Generator, category: StuffCategory, ys: np.ndarray, xs: np.ndarray
             ) -> np.ndarray:
    """A muted texture of the category's colour family, float (H, W, 3)."""
    size = ys.shape[0]
    base = np.asarray(category.color, np.float32) + rng.normal(0, 6, 3)
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    if category.texture == "gradient":
        shade = -28 * (ys / size - 0.5) + 3 * noise
    elif category.texture == "streaks":
        columns = np.convolve(rng.normal(0, 14, size + 2), np.ones(3) / 3, mode="valid")
        shade = columns[None, :].astype(np.float32) + 5 * noise
    elif category.texture == "waves":
        period = rng.uniform(5, 10)
        shade = 9 * np.sin(2 * np.pi * ys / period + 0.8 * np.sin(xs / 9)) + 4 * noise
    elif category.texture == "speckle":
        shade = 12 * noise
    else:  # bricks: light mortar lines, rows offset by half a brick
        brick_h, brick_w = rng.uniform(7, 11), rng.uniform(14, 22)
        row = np.floor(ys / brick_h)
        mortar = ((ys % brick_h) < 1.5) | (((xs + (row % 2) * brick_w / 2) % brick_w) < 1.5)
        shade = 24 * mortar + 4 * noise
    return base + shade[..., None]


def _place_shape(rng: np.random.Generator, category: ThingCategory, size: int, ys: np.ndarray,
                 xs: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A random placement fully inside the image; returns the (H, W) mask and (cx, cy, radius)."""
    radius = rng.uniform(*OBJECT_SIZE_RANGE) * size / 2
    cx, cy = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = (xs - cx) / radius, (ys - cy) / radius
    u = np.cos(angle) * dx + np.sin(angle) * dy
    v = -np.sin(angle) * dx + np.cos(angle) * dy
    return SHAPES[category.shape](u, v), (cx, cy, radius)


def _occlusion_ok(things: list[Segment], full_areas: list[int], new_mask: np.ndarray) -> bool:
    """Every earlier thing keeps at least MIN_VISIBLE_FRACTION of its unoccluded area."""
    return all((t.mask & ~new_mask).sum() >= MIN_VISIBLE_FRACTION * area
               for t, area in zip(things, full_areas))


def _paint_thing(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray,
                 category: ThingCategory, placement: tuple[float, float, float],
                 ys: np.ndarray, xs: np.ndarray) -> None:
    """Fills ``mask`` with the category's colour, jittered, lit from the top left, with grain."""
    cx, cy, radius = placement
    colour = np.asarray(category.color, np.float32) * rng.uniform(0.9, 1.08) + rng.normal(0, 7, 3)
    light = 1 - 0.1 * ((xs[mask] - cx) + (ys[mask] - cy)) / radius
    grain = rng.normal(0, 4, (int(mask.sum()), 1))
    image[mask] = colour[None, :] * light[:, None] + grain
