"""Drawing detections (boxes, labels, scores, masks) on an image, and saving it as PNG.

Colours are a function of the label string alone (a CRC32 of its UTF-8 bytes picks an entry of
:data:`PALETTE`), so a category has the same colour in every image, run and process.
"""
from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from .io import atomic_open

# Saturated, mutually distinct colours that read well over photos; white or black text is chosen per
# colour by its luminance.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 200, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (170, 210, 60), (250, 150, 190),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (128, 0, 0), (120, 255, 180),
    (128, 128, 0), (255, 215, 180), (0, 0, 128), (255, 100, 0), (100, 100, 255),
)


def label_color(label: str) -> tuple[int, int, int]:
    """The RGB colour of ``label``: deterministic across calls, runs and processes."""
    return PALETTE[zlib.crc32(label.encode("utf-8")) % len(PALETTE)]


def draw_detections(image: np.ndarray, boxes: np.ndarray, labels: Sequence[str],
                    scores: np.ndarray | None = None, masks: np.ndarray | None = None,
                    mask_alpha: float = 0.45) -> np.ndarray:
    """Draw N detections on a copy of ``image``.

    Masks are blended first (``(1 - mask_alpha) * pixel + mask_alpha * colour``, rounded, with
    ``mask_alpha`` quantised to 1/256; in detection order), then box outlines, then a text tag
    "name 0.93" (or "name" without scores) on a filled background of the label's colour at the
    box's top-left corner: above the box when there is room, inside it otherwise, always shifted to
    lie inside the image. Outline width and font size grow gently with the image's long side L:
    ``max(1, round(L / 750))`` px and ``max(10, round(L / 75))`` pt (PIL's built-in font).
    Boxes are clipped to the image; boxes entirely outside it draw nothing.

    Args:
        image: (H, W, 3) uint8 RGB (see :func:`ovdet.data.image_io.read_image` for other inputs).
        boxes: (N, 4) float, (x1, y1, x2, y2) in pixels, x2 >= x1 and y2 >= y1.
        labels: N category names.
        scores: (N,) float, or None.
        masks: (N, H, W) bool, or None.
        mask_alpha: mask opacity in [0, 1].

    Returns:
        New (H, W, 3) uint8 array; equal to ``image`` when N = 0.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got shape {image.shape} dtype "
                         f"{image.dtype} (ovdet.data.image_io.read_image converts other layouts)")
    height, width = image.shape[:2]
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {boxes.shape}")
    num = boxes.shape[0]
    if len(labels) != num:
        raise ValueError(f"got {num} boxes but {len(labels)} labels")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes contain NaN or infinite coordinates")
    inverted = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if inverted.size:
        raise ValueError(f"boxes must be xyxy with x2 >= x1 and y2 >= y1; box {inverted[0]} is "
                         f"{boxes[inverted[0]].tolist()}")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (num,):
            raise ValueError(f"scores must have shape ({num},), got {scores.shape}")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != (num, height, width) or masks.dtype != np.bool_:
            raise ValueError(f"masks must be ({num}, {height}, {width}) bool, got shape "
                             f"{masks.shape} dtype {masks.dtype}")
    if not 0.0 <= mask_alpha <= 1.0:
        raise ValueError(f"mask_alpha must be in [0, 1], got {mask_alpha}")

    if num == 0:
        return image.copy()

    out = image.copy()
    colors = [label_color(label) for label in labels]
    if masks is not None:
        weight = round(mask_alpha * 256)  # integer blend: 16-bit temporaries even for huge masks
        for mask, color in zip(masks, colors):
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if rows.size == 0:
                continue
            window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            region = out[window]  # a view: blended in place, only within the mask's bounding box
            tint = np.asarray(color, dtype=np.uint16) * weight
            blended = (region.astype(np.uint16) * (256 - weight) + tint + 128) >> 8
            np.copyto(region, blended.astype(np.uint8), where=mask[window][:, :, None])
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    long_side = max(height, width)
    line_width = max(1, round(long_side / 750))
    font = _font(max(10, round(long_side / 75)))
    for index in range(num):
        x1, y1, x2, y2 = boxes[index].tolist()
        if x2 < 0 or y2 < 0 or x1 > width - 1 or y1 > height - 1:
            continue
        x1, x2 = min(max(x1, 0.0), width - 1.0), min(max(x2, 0.0), width - 1.0)
        y1, y2 = min(max(y1, 0.0), height - 1.0), min(max(y2, 0.0), height - 1.0)
        color = colors[index]
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line_width)
        text = labels[index] if scores is None else f"{labels[index]} {scores[index]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = line_width
        tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
        tag_x = min(x1, width - tag_w) if tag_w <= width else 0
        tag_y = y1 - tag_h if y1 - tag_h >= 0 else min(y1, max(height - tag_h, 0))
        draw.rectangle((tag_x, tag_y, tag_x + tag_w - 1, tag_y + tag_h - 1), fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        draw.text((tag_x + pad - left, tag_y + pad - top), text, font=font,
                  fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))
    return np.array(canvas)


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image``, (H, W) or (H, W, 3) or (H, W, 4) uint8, as a PNG at ``path`` atomically
    (a reader never sees a half-written file); parent folders are created."""
    layout_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
    if image.dtype != np.uint8 or not layout_ok:
        raise ValueError(f"save_png expects (H, W), (H, W, 3) or (H, W, 4) uint8, got shape "
                         f"{image.shape} dtype {image.dtype}")
    with atomic_open(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's built-in font at ``size`` points; its fixed-size bitmap font without FreeType."""
    if features.check("freetype2"):
        return ImageFont.load_default(size)
    return ImageFont.load_default()
