"""Drawing detections (boxes, labels, scores, masks) and panoptic segmentations (translucent
segments, outlines, labels) on an image, and saving it as PNG.

Colours are a function of the label string alone (a CRC32 of its UTF-8 bytes picks an entry of
:data:`PALETTE`), so a category has the same colour in every image, run and process.

Text is drawn with DejaVu Sans when it is installed (clear at 9 px), else PIL's built-in font. A
label with characters that font lacks (CJK, emoji, ...) is drawn with an installed font that has
them all (found with ``fc-list`` or at the usual places of Noto CJK, PingFang, Microsoft YaHei,
Arial Unicode); coverage is checked on the glyphs themselves (a missing glyph renders as the
font's "missing" box). When no font has them, each missing character is written so that it can
still be read and told apart: its ASCII decomposition ("é" -> "e"), the Unicode name of a symbol
(":red apple:") or its code point ("U+732B").
"""
from __future__ import annotations

import os
import shutil
import subprocess
import unicodedata
import zlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features
from scipy import ndimage

from .io import atomic_open

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Rect = tuple[float, float, float, float]  # x1, y1, x2, y2 (inclusive), pixels

# Fonts tried for text the main font lacks, when fc-list is absent or finds none.
FALLBACK_FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/seguisym.ttf",
)
MAIN_FONT_PATHS: tuple[str, ...] = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
)

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
    box's top-left corner: above the box when there is room, inside it otherwise, always inside the
    image. Tags never cover earlier tags when there is another place for them (:func:`place_tag`:
    stacked above or inside the box, or at its bottom), so pass detections best first. Outline
    width and font size grow with the image's long side L: ``max(1, round(L / 750))`` px and
    :func:`font_size` px (9 px up to L = 600, then L / 64). Text the font cannot draw is drawn as
    the module doc says. Boxes are clipped to the image; boxes entirely outside it draw nothing.

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
    size = font_size(long_side)
    placed: list[Rect] = []
    for index in range(num):
        x1, y1, x2, y2 = boxes[index].tolist()
        if x2 < 0 or y2 < 0 or x1 > width - 1 or y1 > height - 1:
            continue
        x1, x2 = min(max(x1, 0.0), width - 1.0), min(max(x2, 0.0), width - 1.0)
        y1, y2 = min(max(y1, 0.0), height - 1.0), min(max(y2, 0.0), height - 1.0)
        color = colors[index]
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line_width)
        label = labels[index] if scores is None else f"{labels[index]} {scores[index]:.2f}"
        font, text = font_for(label, size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = line_width
        tag = place_tag((x1, y1, x2, y2), (right - left + 2 * pad, bottom - top + 2 * pad),
                        (width, height), placed)
        placed.append(tag)
        draw.rectangle(tag, fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        draw.text((tag[0] + pad - left, tag[1] + pad - top), text, font=font,
                  fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))
    return np.array(canvas)


def draw_panoptic(image: np.ndarray, ids: np.ndarray, segments: Sequence[dict],
                  alpha: float = 0.45) -> np.ndarray:
    """Draw a panoptic segmentation on a copy of ``image``.

    Each segment's pixels are blended with its label's colour (:func:`label_color`, so two
    instances of one thing share a colour) as :func:`draw_detections` blends masks; then its
    outline pixels, those whose id differs from a 4-neighbour's (within the image), are painted in
    that colour, opaque; then one tag with the label, on a filled background of the colour, is
    centred at the segment's pixel farthest from its border (the image's edge counts as border;
    ties: the first in row-major order), kept inside the image. Tags are drawn largest segment
    first, so a small segment's tag is not hidden under a large one's. Void (id 0) and ids that no
    segment names are neither filled, outlined nor labelled; segments absent from ``ids`` draw
    nothing. Outline width and text size follow :func:`draw_detections`: outlines are thickened
    by ``max(1, round(L / 750)) - 1`` px on each side, text is :func:`font_size` px (at least 9 px,
    so a 64 px image gets tags as legible as a 600 px one), the image keeps its size.

    Args:
        image: (H, W, 3) uint8 RGB.
        ids: (H, W) integer segment ids (0 = void), e.g. a predictor's ``"panoptic_seg"`` ids.
        segments: ``[{"id": int > 0, "label": str, ...}]`` as the predictor returns them
            (``"isthing"``, ``"score"`` and other keys are not used: things and stuff are drawn
            alike).
        alpha: fill opacity in [0, 1].

    Returns:
        New (H, W, 3) uint8 array; equal to ``image`` when no segment is in ``ids``.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got shape {image.shape} dtype "
                         f"{image.dtype} (ovdet.data.image_io.read_image converts other layouts)")
    height, width = image.shape[:2]
    ids = np.asarray(ids)
    if ids.shape != (height, width) or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be ({height}, {width}) integers, got shape {ids.shape} "
                         f"dtype {ids.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    labels: dict[int, str] = {}
    for segment in segments:
        missing = [k for k in ("id", "label") if k not in segment]
        if missing:
            raise ValueError(f"each segment needs 'id' and 'label', got {sorted(segment)}")
        if int(segment["id"]) == 0:
            raise ValueError("segment id 0 is void; segments need ids > 0")
        if int(segment["id"]) in labels:
            raise ValueError(f"segment id {segment['id']} is listed twice")
        labels[int(segment["id"])] = str(segment["label"])

    # compact ids: 0 for void and unknown ids, k for the k-th segment present
    present = [i for i in np.unique(ids).tolist() if i in labels]
    if not present:
        return image.copy()
    lookup_ids = np.asarray(present)
    index = np.searchsorted(lookup_ids, ids)
    index = np.minimum(index, len(present) - 1)
    compact = np.where(lookup_ids[index] == ids, index + 1, 0)
    colors = np.asarray([(0, 0, 0)] + [label_color(labels[i]) for i in present], np.uint16)

    out = image.copy()
    weight = round(alpha * 256)  # integer blend, as draw_detections
    inside = compact > 0
    blended = (out.astype(np.uint16) * (256 - weight) + colors[compact] * weight + 128) >> 8
    np.copyto(out, blended.astype(np.uint8), where=inside[:, :, None])

    edge = np.zeros((height, width), bool)
    vertical = ids[1:] != ids[:-1]
    horizontal = ids[:, 1:] != ids[:, :-1]
    edge[1:] |= vertical
    edge[:-1] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    line_width = max(1, round(max(height, width) / 750))
    if line_width > 1:
        edge = ndimage.binary_dilation(edge, iterations=line_width - 1)
    outline = edge & inside
    out[outline] = colors[compact[outline]].astype(np.uint8)

    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    size = font_size(max(height, width))
    pad = line_width
    windows = ndimage.find_objects(compact)
    areas = np.bincount(compact.ravel(), minlength=len(present) + 1)
    for k in sorted(range(1, len(present) + 1), key=lambda k: -areas[k]):
        rows, cols = windows[k - 1]
        mask = np.pad(compact[rows, cols] == k, 1)  # False border: the window's edge is border
        distance = ndimage.distance_transform_edt(mask)
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        y, x = y - 1 + rows.start, x - 1 + cols.start
        label = labels[present[k - 1]]
        color = tuple(int(c) for c in colors[k])
        font, text = font_for(label, size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_w, tag_h = right - left + 2 * pad, bottom - top + 2 * pad
        x1 = min(max(x - tag_w // 2, 0), max(width - tag_w, 0))
        y1 = min(max(y - tag_h // 2, 0), max(height - tag_h, 0))
        draw.rectangle((x1, y1, x1 + tag_w - 1, y1 + tag_h - 1), fill=color)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        draw.text((x1 + pad - left, y1 + pad - top), text, font=font,
                  fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))
    return np.array(canvas)


def _overlap(a: Rect, b: Rect) -> float:
    """Area shared by two inclusive pixel rectangles."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * \
        max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)


def place_tag(box: Rect, tag_size: tuple[float, float], image_size: tuple[int, int],
              placed: Sequence[Rect]) -> Rect:
    """Where a (w, h) text tag of ``box`` goes, as an inclusive rectangle inside the image (when
    it fits): the first free place among, in order, above the box, inside its top, stacked higher
    above or lower inside (up to four tags), below it (stacked likewise) and inside its bottom,
    each left-aligned with the box, right-aligned with it, then at the image's left and right
    edges; when every place covers a ``placed`` tag, the least covering."""
    x1, y1, x2, y2 = box
    (tag_w, tag_h), (width, height) = tag_size, image_size
    xs = [x1, x2 - tag_w + 1, 0, width - tag_w]
    ys = [y1 - tag_h, y1]
    for k in range(1, 5):
        ys += [y1 - tag_h * (k + 1), y1 + tag_h * k]
    ys += [y2 + 1 + tag_h * k for k in range(4)] + [y2 - tag_h + 1]
    candidates = []
    for y in ys:
        if 0 <= y <= height - tag_h:
            for x in xs:
                x = min(max(x, 0), width - tag_w) if tag_w <= width else 0
                candidates.append((x, y, x + tag_w - 1, y + tag_h - 1))
    if not candidates:  # taller than the image: the old rule, top-aligned
        x = min(x1, width - tag_w) if tag_w <= width else 0
        y = min(y1, max(height - tag_h, 0))
        return (x, y, x + tag_w - 1, y + tag_h - 1)
    return min(candidates, key=lambda c: sum(_overlap(c, p) for p in placed))  # first minimum


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write ``image``, (H, W) or (H, W, 3) or (H, W, 4) uint8, as a PNG at ``path`` atomically
    (a reader never sees a half-written file); parent folders are created."""
    layout_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
    if image.dtype != np.uint8 or not layout_ok:
        raise ValueError(f"save_png expects (H, W), (H, W, 3) or (H, W, 4) uint8, got shape "
                         f"{image.shape} dtype {image.dtype}")
    with atomic_open(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")


def font_size(long_side: int) -> int:
    """Text size in pixels for an image whose long side is ``long_side``."""
    return max(9, round(long_side / 64))


def _run(command: list[str]) -> list[str]:
    """Output lines of a font query command; [] when it is absent or fails."""
    if shutil.which(command[0]) is None:
        return []
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont | None:
    """The font at ``path``, or None when it cannot be loaded at ``size`` (e.g. bitmap emoji)."""
    try:
        return ImageFont.truetype(path, size)
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=8)
def main_font(size: int) -> Font:
    """DejaVu Sans (or fontconfig's match for it) at ``size`` px; PIL's built-in font without."""
    if not features.check("freetype2"):
        return ImageFont.load_default()
    for path in (*MAIN_FONT_PATHS, *_run(["fc-match", "-f", "%{file}", "DejaVu Sans"])):
        font = _truetype(path, size) if os.path.isfile(path) else None
        if font is not None:
            return font
    return ImageFont.load_default(size)


def _needs_glyph(char: str) -> bool:
    return not char.isspace() and unicodedata.category(char) not in ("Mn", "Me", "Cf", "Cc")


@lru_cache(maxsize=4096)
def has_glyph(font: Font, char: str) -> bool:
    """Whether ``font`` draws ``char`` rather than its missing-glyph box (compared with the
    rendering of a code point no font has); PIL's bitmap font covers Latin-1."""
    if not isinstance(font, ImageFont.FreeTypeFont):
        return ord(char) < 256
    missing = font.getmask("\U0010FFFD")
    mask = font.getmask(char)
    return mask.size != missing.size or bytes(mask) != bytes(missing)


def missing_chars(font: Font, text: str) -> str:
    """The distinct characters of ``text`` that ``font`` cannot draw, in order."""
    return "".join(dict.fromkeys(c for c in text if _needs_glyph(c) and not has_glyph(font, c)))


@lru_cache(maxsize=64)
def _covering_font(chars: str, size: int) -> Font | None:
    """An installed font that draws every one of ``chars`` (module doc), or None."""
    charset = " ".join(f"{ord(c):x}" for c in chars)
    paths = [*_run(["fc-list", f":charset={charset}", "file"]), *FALLBACK_FONT_PATHS]
    for path in dict.fromkeys(p.rstrip(":").strip() for p in paths):
        font = _truetype(path, size) if os.path.isfile(path) else None
        if font is not None and not missing_chars(font, chars):
            return font
    return None


def readable_text(text: str, font: Font) -> str:
    """``text`` with each character ``font`` lacks written out (module doc); code points are
    spaced from the word before them ("U+732B U+72AC")."""
    out = ""
    for char in text:
        if not _needs_glyph(char) or has_glyph(font, char):
            out += char
            continue
        ascii_form = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
        name = unicodedata.name(char, "")
        if ascii_form.strip():
            out += ascii_form
        elif unicodedata.category(char).startswith("S") and name:
            out += f":{name.lower()}:"
        else:
            out += (" " if out[-1:].isalnum() else "") + f"U+{ord(char):04X}"
    return out


def font_for(text: str, size: int) -> tuple[Font, str]:
    """The font to draw ``text`` with at ``size`` px, and the text to draw (module doc)."""
    font = main_font(size)
    lacking = missing_chars(font, text)
    if not lacking:
        return font, text
    fallback = _covering_font(lacking, size)
    if fallback is not None:
        return fallback, text
    return font, readable_text(text, font)
