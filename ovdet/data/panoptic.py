"""COCO panoptic files (a json + one PNG per image) -> dataset dicts, with the base/novel split.

``register_coco_panoptic(name, panoptic_json, panoptic_root, image_root, novel=[names])`` is the
one-liner for a user's own data. Categories with ``isthing == 1`` are things, the others stuff; a
thing category is novel when its name is in ``novel`` or the json marks it ``"split": "novel"``
(the toy world and ``datasets/prepare_coco_panoptic.py`` do). Stuff is never novel.

Records (catalog module doc)::

    {"file_name": image_root / image file name, "height": int, "width": int, "image_id": int,
     "pan_seg_file_name": panoptic_root / annotation file name (the PNG),
     "segments_info": [{"id": int, "category_id": int (index into metadata.panoptic_classes:
                        things first, then stuff), "isthing": bool, "iscrowd": 0 | 1,
                        "area": int, "bbox": [x, y, w, h]}],
     "annotations": [{"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS,
                      "category_id": int (index into metadata.thing_classes), "iscrowd": 0 | 1,
                      "segment_id": int}]}            # the thing segments, for the detector

With ``keep="base"`` (training sets) novel things are removed: their names from
``thing_classes`` and their segments from ``segments_info`` and ``annotations``. The PNG is left
as it is: a pixel whose id is not in ``segments_info`` is void for training (the mapper's
``"void"``: neither a thing nor stuff, never a target), so novel objects are never learned.
(PQ evaluation follows panopticapi instead: only id 0 is VOID there, and unlisted ids are no
segment that excuses nothing; evaluation files therefore keep every segment.)

A missing json is a ``FileNotFoundError``, an unusable one a :class:`DatasetError`; both name the
dataset and the file. Segments of category ids that the json does not define, and annotations of
images the json does not list, are dropped with one logged summary per file. An unreadable PNG is
an :class:`~ovdet.data.image_io.ImageReadError` (loaders log and skip the image).

:func:`make_coco_panoptic_ovd` is the step behind ``datasets/prepare_coco_panoptic.py``: COCO's
panoptic json -> the open-vocabulary file of :mod:`ovdet.data.ovd_splits`'s 48/17 split.
"""
from __future__ import annotations

import logging
import os
import struct
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..utils.io import check_json_dataset, read_json
from .catalog import BoxMode, DatasetCatalog, DatasetError, Metadata
from .ovd_splits import COCO_OVD_BASE_IDS, COCO_OVD_NAMES, COCO_OVD_NOVEL_IDS, KEEP
from .toyworld.writer import decode_segment_ids

logger = logging.getLogger(__name__)

PANOPTIC_FIELDS = {"images": ("id", "file_name", "height", "width"),
                   "annotations": ("image_id", "file_name", "segments_info"),
                   "categories": ("id", "name", "isthing")}
SEGMENT_FIELDS = ("id", "category_id", "area", "bbox")

# Errors PIL's decoders raise on broken data (EOFError and struct.error are not OSErrors).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


def check_panoptic_schema(data: object, name: str = "") -> dict:
    """``data`` when it is a COCO panoptic dict (module doc), else ``ValueError`` naming ``name``
    (if given) and the first thing it lacks."""
    check_json_dataset(data, name, "COCO panoptic", PANOPTIC_FIELDS)
    where = f"{name}: " if name else ""
    for i, ann in enumerate(data["annotations"]):
        check_json_dataset(ann, f"{where}annotations[{i}]", "COCO panoptic",
                           {"segments_info": SEGMENT_FIELDS})
    return data


def _read_json(panoptic_json: str, name: str) -> dict:
    """The panoptic json of dataset ``name``: FileNotFoundError when it is absent, DatasetError
    when it is unusable, both naming the dataset and the file."""
    try:
        data = read_json(panoptic_json, "panoptic annotation file")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"dataset {name!r}: {error}") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"dataset {name!r}: {error}") from None
    try:
        return check_panoptic_schema(data, str(panoptic_json))
    except ValueError as error:
        raise DatasetError(f"dataset {name!r}: {error}") from None


def coco_panoptic_metadata(name: str, panoptic_json: str, panoptic_root: str, image_root: str,
                           novel: Sequence[str] = (), keep: str = "all") -> Metadata:
    """Metadata from the categories of ``panoptic_json``: things (``isthing == 1``) and stuff,
    each sorted by id; novel things dropped when ``keep == "base"``."""
    if keep not in ("all", "base"):
        raise ValueError(f"keep must be 'all' or 'base', got {keep!r}")
    categories = sorted(_read_json(panoptic_json, name)["categories"], key=lambda c: c["id"])
    things = [c for c in categories if c["isthing"]]
    stuff = [c for c in categories if not c["isthing"]]
    novel_names = set(novel)
    unknown = novel_names - {c["name"] for c in things}
    if unknown:
        stuff_named = sorted(unknown & {c["name"] for c in stuff})
        why = f" (stuff is never novel: {stuff_named})" if stuff_named else ""
        raise DatasetError(f"dataset {name!r}: novel names not among the thing categories of "
                           f"{panoptic_json}: {sorted(unknown)}{why}")
    kept = []
    for category in things:
        is_novel = category["name"] in novel_names or category.get("split") == "novel"
        if keep == "base" and is_novel:
            continue
        kept.append((category, "novel" if is_novel else "base"))
    return Metadata(
        name=name, thing_classes=[c["name"] for c, _ in kept], class_splits=[s for _, s in kept],
        thing_dataset_id_to_contiguous_id={c["id"]: k for k, (c, _) in enumerate(kept)},
        stuff_classes=[c["name"] for c in stuff],
        stuff_dataset_id_to_contiguous_id={c["id"]: k for k, c in enumerate(stuff)},
        json_file=str(panoptic_json), image_root=str(image_root),
        panoptic_json=str(panoptic_json), panoptic_root=str(panoptic_root),
        evaluator_type="coco_panoptic", keep=keep)


def load_coco_panoptic_json(panoptic_json: str, panoptic_root: str, image_root: str,
                            metadata: Metadata) -> list[dict]:
    """Dataset dicts (module doc) of the images of ``panoptic_json`` that have a panoptic
    annotation; segments of categories outside ``metadata`` (novel things in a base-only set)
    are left out, so that their pixels are void."""
    data = _read_json(panoptic_json, metadata.name)
    things = metadata.thing_dataset_id_to_contiguous_id
    num_things = len(metadata.thing_classes)
    stuff = {i: num_things + k for i, k in metadata.stuff_dataset_id_to_contiguous_id.items()}
    all_ids = {c["id"] for c in data["categories"]}
    per_image = {ann["image_id"]: ann for ann in data["annotations"]}
    dropped: Counter = Counter()
    dropped["annotations of images not in the json"] = len(set(per_image) - {
        image["id"] for image in data["images"]})
    dicts = []
    for image in data["images"]:
        ann = per_image.get(image["id"])
        if ann is None:
            dropped["images without a panoptic annotation"] += 1
            continue
        height, width = image["height"], image["width"]
        segments, annotations = [], []
        for segment in ann["segments_info"]:
            category_id = segment["category_id"]
            if category_id not in all_ids:
                dropped["segments of unknown category ids"] += 1
                continue
            if category_id not in things and category_id not in stuff:
                continue  # a removed (novel) thing: its pixels are void
            is_thing = category_id in things
            iscrowd = int(segment.get("iscrowd", 0))
            bbox = [float(v) for v in segment["bbox"]]
            segments.append({"id": segment["id"],
                             "category_id": things[category_id] if is_thing else stuff[category_id],
                             "isthing": is_thing, "iscrowd": iscrowd, "area": segment["area"],
                             "bbox": bbox})
            if not is_thing:
                continue
            x, y, w, h = bbox
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(width), x + w), min(float(height), y + h)
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                dropped["thing boxes empty after clipping to the image (segments kept)"] += 1
                continue
            annotations.append({"bbox": [x1, y1, x2 - x1, y2 - y1],
                                "bbox_mode": BoxMode.XYWH_ABS, "category_id": things[category_id],
                                "iscrowd": iscrowd, "segment_id": segment["id"]})
        dicts.append({"file_name": str(Path(image_root) / image["file_name"]), "height": height,
                      "width": width, "image_id": image["id"],
                      "pan_seg_file_name": str(Path(panoptic_root) / ann["file_name"]),
                      "segments_info": segments, "annotations": annotations})
    dropped = +dropped  # zero counts out
    if dropped:
        logger.warning("%s: dropped %s", panoptic_json,
                       ", ".join(f"{n} {why}" for why, n in dropped.items()))
    return dicts


def register_coco_panoptic(name: str, panoptic_json: str, panoptic_root: str, image_root: str,
                           novel: Sequence[str] = (), keep: str = "all") -> None:
    """Register a COCO panoptic json and its PNG folder as dataset ``name`` (module doc); the
    files are read when the dataset is first used."""
    def metadata() -> Metadata:
        return coco_panoptic_metadata(name, panoptic_json, panoptic_root, image_root, novel, keep)

    DatasetCatalog.register(
        name, lambda: load_coco_panoptic_json(panoptic_json, panoptic_root, image_root,
                                              DatasetCatalog.metadata(name)), metadata)


def read_panoptic_png(path: str | os.PathLike) -> np.ndarray:
    """The (H, W) int64 segment ids of a COCO panoptic PNG (id = R + 256 G + 256^2 B; 0 is VOID,
    and for training so is any id missing from ``segments_info``).

    Raises:
        ImageReadError: a file that is missing, empty, not an image, truncated or corrupt, or not
            an RGB image (a palette or grayscale PNG is not in COCO panoptic's encoding).
    """
    from .image_io import ImageReadError  # here: importing image_io imports torch
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "is a directory, not a panoptic PNG" if path.is_dir()
                             else "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()  # decode everything now: a truncated file fails here
            mode, rgb = image.mode, np.asarray(image)
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not an image file, or a format PIL cannot decode") from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(path, str(error)) from None
    except _DECODE_ERRORS as error:
        raise ImageReadError(path, f"truncated or corrupt data ({error})") from error
    if mode != "RGB":
        raise ImageReadError(path, f"PIL mode {mode}, expected an RGB panoptic PNG "
                                   "(segment id = R + 256 G + 256^2 B)")
    return decode_segment_ids(rgb)


def make_coco_panoptic_ovd(panoptic: dict, keep: str, others: str = "base") -> tuple[dict, int]:
    """COCO panoptic restricted to the OVR-CNN split (:mod:`ovdet.data.ovd_splits`).

    Args:
        panoptic: a loaded COCO panoptic json (``images``; ``annotations`` with
            ``segments_info``; ``categories`` with ``isthing``, COCO 2017's thing ids and names;
            other top-level keys are passed through).
        keep: "base": base things, their segments and all stuff (training); the 17 novel things
            are removed from ``categories`` and their segments from ``segments_info``, so that
            their pixels are void for training. "all": every segment, novel things marked
            (evaluation).
        others: the 15 COCO thing categories outside the 48/17 split. "base" (default): kept in
            both files as base things (63 base things in all), so that the evaluation file keeps
            every segment. "drop": removed from both files as the instance files drop them, so a
            base-only set has ``coco_ovd_train``'s 48 classes; but PQ (panopticapi's rules) does
            not count their unlisted pixels as VOID: predictions there are not excused.

    Returns:
        ``(new dict, number of segments removed)``. Kept thing categories are copies marked
        ``"split": "base" | "novel"``; stuff categories and every image are kept unchanged.
        PNGs are not touched: they stay valid, the ids of removed segments being unlisted.

    Raises ``ValueError`` when ``panoptic`` is not a COCO panoptic dict, or its thing categories
    are not COCO 2017's (missing, renamed or marked as stuff).
    """
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")
    if others not in ("base", "drop"):
        raise ValueError(f"others must be 'base' or 'drop', got {others!r}")
    check_panoptic_schema(panoptic)
    by_id = {c["id"]: c for c in panoptic["categories"]}
    absent = [i for i in COCO_OVD_NAMES if i not in by_id]
    if absent:
        raise ValueError(f"not COCO 2017's panoptic categories: thing ids {absent} of the 48/17 "
                         f"split are missing (the input has {len(by_id)} categories)")
    wrong = [f"{i} is {by_id[i]['name']!r}, not {n!r}" for i, n in COCO_OVD_NAMES.items()
             if by_id[i]["name"] != n]
    wrong += [f"{i} ({n!r}) is not a thing" for i, n in COCO_OVD_NAMES.items()
              if not by_id[i]["isthing"]]
    if wrong:
        raise ValueError(f"not COCO 2017's panoptic category ids: {'; '.join(wrong)}")
    split = dict.fromkeys(COCO_OVD_BASE_IDS, "base")
    if others == "base":
        split.update((c["id"], "base") for c in panoptic["categories"]
                     if c["isthing"] and c["id"] not in COCO_OVD_NOVEL_IDS)
    if keep == "all":
        split.update(dict.fromkeys(COCO_OVD_NOVEL_IDS, "novel"))
    kept_ids = set(split) | {c["id"] for c in panoptic["categories"] if not c["isthing"]}
    out = dict(panoptic)
    out["images"] = list(panoptic["images"])
    out["categories"] = [{**c, "split": split[c["id"]]} if c["isthing"] else c
                         for c in panoptic["categories"] if c["id"] in kept_ids]
    removed = 0
    out["annotations"] = []
    for ann in panoptic["annotations"]:
        segments = [s for s in ann["segments_info"] if s["category_id"] in kept_ids]
        removed += len(ann["segments_info"]) - len(segments)
        out["annotations"].append({**ann, "segments_info": segments})
    return out, removed


def describe_panoptic(data: dict) -> str:
    """One line of counts of a panoptic dict: images, categories by kind and split, segments."""
    things = [c.get("split") for c in data["categories"] if c["isthing"]]
    stuff = len(data["categories"]) - len(things)
    segments = sum(len(a["segments_info"]) for a in data["annotations"])
    return (f"{len(data['images'])} images, {len(things)} thing categories "
            f"({things.count('base')} base, {things.count('novel')} novel), {stuff} stuff "
            f"categories, {segments} segments")
