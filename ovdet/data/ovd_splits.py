"""Open-vocabulary splits of COCO and LVIS: pure functions on loaded annotation dicts, and
``write_ovd_files``, the file-level step of the ``datasets/prepare_*_ovd.py`` scripts.

* COCO: the OVR-CNN split (Zareian et al. 2021), used by PB-OVD, PromptDet and most OVD work:
  48 base and 17 novel categories of COCO 2017's 80; the other 15 are dropped from both training
  and evaluation. Training keeps base annotations only; evaluation keeps the 65.
* LVIS v1: the rare categories (``frequency == "r"``, 337 of 1203) are novel, common and frequent
  ones are base (ViLD's protocol).

Every kept category gets ``"split": "base" | "novel"``. Images are always all kept: an image
whose annotations were all novel stays, as a background image, so that novel objects are never
seen as labelled boxes.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..utils.io import atomic_write_json, read_json

COCO_OVD_BASE_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 7, 8, 9, 15, 16, 19, 20, 23, 24, 25, 27, 31, 33, 34, 35, 38, 42, 44, 48, 50, 51,
    52, 53, 54, 55, 56, 57, 59, 60, 62, 65, 70, 72, 73, 74, 75, 78, 79, 80, 82, 84, 85, 86, 90)
COCO_OVD_NOVEL_IDS: tuple[int, ...] = (
    5, 6, 17, 18, 21, 22, 28, 32, 36, 41, 47, 49, 61, 63, 76, 81, 87)

# COCO 2017's names of the 65 categories, to catch a json whose ids mean something else
COCO_OVD_NAMES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse",
    20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe",
    27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee",
    35: "skis", 36: "snowboard", 38: "kite", 41: "skateboard", 42: "surfboard", 44: "bottle",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 59: "pizza", 60: "donut",
    61: "cake", 62: "chair", 63: "couch", 65: "bed", 70: "toilet", 72: "tv", 73: "laptop",
    74: "mouse", 75: "remote", 76: "keyboard", 78: "microwave", 79: "oven", 80: "toaster",
    81: "sink", 82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors",
    90: "toothbrush",
}

KEEP = ("base", "all")
LVIS_FREQUENCIES = ("r", "c", "f")


def _check_keep(keep: str) -> None:
    if keep not in KEEP:
        raise ValueError(f"keep must be one of {KEEP}, got {keep!r}")


def _check_schema(data: object, kind: str, image_keys: Sequence[str],
                  category_keys: Sequence[str]) -> None:
    """``ValueError`` naming the first thing a ``kind`` annotation dict lacks."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a {kind} json (a dict with images, annotations, categories), "
                         f"got a {type(data).__name__}")
    missing = [k for k in ("images", "annotations", "categories")
               if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(f"not a {kind} json: no list {missing} at the top level "
                         f"(found keys {sorted(data)})")
    for section, required in (("images", image_keys), ("categories", category_keys),
                              ("annotations", ("id", "image_id", "category_id"))):
        for i, entry in enumerate(data[section]):
            absent = [k for k in required if not isinstance(entry, dict) or k not in entry]
            if absent:
                raise ValueError(f"not a {kind} json: {section}[{i}] has no {absent}")


def make_coco_ovd(instances: dict, keep: str) -> dict:
    """COCO instances restricted to the OVR-CNN split.

    Args:
        instances: a loaded COCO instances json (``images``, ``annotations``, ``categories``
            with COCO 2017's ids and names; other top-level keys are passed through).
        keep: "base": the 48 base categories and their annotations (training);
            "all": the 65 base and novel categories and their annotations (evaluation).

    Returns:
        A new dict with every image, the kept categories (copies with ``"split"``) and the kept
        annotations. Image and annotation dicts are shared with ``instances``, not copied.

    Raises ``ValueError`` when ``instances`` is not a COCO instances dict or lacks one of the 65
    categories (or names it differently).
    """
    _check_keep(keep)
    _check_schema(instances, "COCO instances", ("id",), ("id", "name"))
    names = {c["id"]: c["name"] for c in instances["categories"]}
    absent = [i for i in COCO_OVD_NAMES if i not in names]
    if absent:
        raise ValueError(f"not COCO 2017's categories: ids {absent} of the 48/17 split are "
                         f"missing (the input has {len(names)} categories)")
    renamed = [f"{i} is {names[i]!r}, not {n!r}" for i, n in COCO_OVD_NAMES.items()
               if names[i] != n]
    if renamed:
        raise ValueError(f"not COCO 2017's category ids: {'; '.join(renamed)}")
    split = dict.fromkeys(COCO_OVD_BASE_IDS, "base")
    if keep == "all":
        split.update(dict.fromkeys(COCO_OVD_NOVEL_IDS, "novel"))
    out = dict(instances)
    out["images"] = list(instances["images"])
    out["categories"] = [{**c, "split": split[c["id"]]}
                         for c in instances["categories"] if c["id"] in split]
    out["annotations"] = [a for a in instances["annotations"] if a["category_id"] in split]
    return out


def make_lvis_ovd(lvis: dict, keep: str) -> dict:
    """LVIS v1 with rare categories as novel.

    Args:
        lvis: a loaded LVIS v1 json (images with ``neg_category_ids`` and
            ``not_exhaustive_category_ids``, categories with ``frequency`` in r / c / f).
        keep: "base": drop the rare categories, their annotations, and their ids from every
            image's ``neg_category_ids`` / ``not_exhaustive_category_ids`` (training);
            "all": keep everything (evaluation).

    Returns:
        A new dict; every category is a copy with ``"split"`` ("novel" for frequency "r", else
        "base"). With keep="base" the images are copies; annotation dicts (and images with
        keep="all") are shared with ``lvis``.

    Raises ``ValueError`` when ``lvis`` is not an LVIS v1 dict.
    """
    _check_keep(keep)
    _check_schema(lvis, "LVIS v1", ("id", "neg_category_ids", "not_exhaustive_category_ids"),
                  ("id", "frequency"))
    bad = [c["id"] for c in lvis["categories"] if c["frequency"] not in LVIS_FREQUENCIES]
    if bad:
        raise ValueError(f"not an LVIS v1 json: categories {bad[:10]} have a frequency other "
                         f"than {LVIS_FREQUENCIES}")
    rare = {c["id"] for c in lvis["categories"] if c["frequency"] == "r"}
    out = dict(lvis)
    out["categories"] = [{**c, "split": "novel" if c["id"] in rare else "base"}
                         for c in lvis["categories"] if keep == "all" or c["id"] not in rare]
    if keep == "all":
        out["images"] = list(lvis["images"])
        out["annotations"] = list(lvis["annotations"])
        return out
    out["images"] = [
        {**img,
         "neg_category_ids": [i for i in img["neg_category_ids"] if i not in rare],
         "not_exhaustive_category_ids": [i for i in img["not_exhaustive_category_ids"]
                                         if i not in rare]}
        for img in lvis["images"]]
    out["annotations"] = [a for a in lvis["annotations"] if a["category_id"] not in rare]
    return out


def describe(data: dict) -> str:
    """One line of counts for a split made here: images, categories by split, annotations."""
    splits = [c.get("split") for c in data["categories"]]
    return (f"{len(data['images'])} images, {len(splits)} categories "
            f"({splits.count('base')} base, {splits.count('novel')} novel), "
            f"{len(data['annotations'])} annotations")


def write_ovd_files(folder: Path, jobs: Sequence[tuple[str, str, str]],
                    convert: Callable[[dict, str], dict], download_hint: str) -> int:
    """For each ``(source, destination, keep)`` of ``jobs`` in ``folder``: read the source json,
    ``convert(data, keep)``, write the destination atomically and print its counts. Returns the
    exit status of the prepare scripts: 0, or 2 after one line on stderr naming a missing input
    (with ``download_hint``) or a malformed one; nothing is written for a missing input."""
    missing = [str(folder / src) for src, _, _ in jobs if not (folder / src).is_file()]
    if missing:
        print(f"error: {', '.join(missing)} not found; {download_hint}", file=sys.stderr)
        return 2
    for src, dst, keep in jobs:
        try:
            converted = convert(read_json(folder / src), keep)
        except (OSError, ValueError) as error:
            print(f"error: {folder / src}: {error}", file=sys.stderr)
            return 2
        atomic_write_json(folder / dst, converted)
        print(f"wrote {folder / dst}: {describe(converted)}")
    return 0
