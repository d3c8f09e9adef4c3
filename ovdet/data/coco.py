"""COCO-format instances files -> dataset dicts, with the base/novel split applied.

``register_coco_instances(name, json_file, image_root, novel=[names])`` is the one-liner for a
user's own data. A category counts as novel when its name is in ``novel`` or when the json marks
it ``"split": "novel"`` (ovdet's OVD files and the toy world do). With ``keep="base"`` (training
sets) novel categories are removed entirely: their boxes and their names.

A missing json is a ``FileNotFoundError``, an unusable one (not JSON, not a COCO instances file) a
:class:`DatasetError`; both name the dataset and the file and are raised when it is first used.

An annotation's ``pseudo_score`` (pseudo-box files, :mod:`ovdet.pseudo.runner`) is kept in its
record. Invalid annotations are dropped with one logged summary per file, never silently kept:
boxes with non-positive width or height after clipping to the image, and unknown category ids.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..utils.io import read_json_dataset
from .catalog import BoxMode, DatasetCatalog, DatasetError, Metadata

logger = logging.getLogger(__name__)


def _read_json(json_file: str, name: str) -> dict:
    """The COCO instances json of dataset ``name``: FileNotFoundError when it is absent,
    DatasetError when it is unusable, both naming the dataset and the file."""
    try:
        return read_json_dataset(json_file, "COCO instances",
                                 {"images": (), "annotations": (), "categories": ("id", "name")},
                                 "annotation file")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"dataset {name!r}: {error}") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"dataset {name!r}: {error}") from None


def coco_metadata(name: str, json_file: str, image_root: str, novel: Sequence[str] = (),
                  keep: str = "all", evaluator_type: str = "coco") -> Metadata:
    """Metadata from the categories of ``json_file`` (sorted by id), novel ones dropped when
    ``keep == "base"``."""
    if keep not in ("all", "base"):
        raise ValueError(f"keep must be 'all' or 'base', got {keep!r}")
    categories = sorted(_read_json(json_file, name)["categories"], key=lambda c: c["id"])
    novel_names = set(novel)
    unknown = novel_names - {c["name"] for c in categories}
    if unknown:
        raise DatasetError(f"dataset {name!r}: novel names not among the categories of "
                           f"{json_file}: {sorted(unknown)}")
    kept = []
    for category in categories:
        is_novel = category["name"] in novel_names or category.get("split") == "novel" \
            or (evaluator_type == "lvis" and category.get("frequency") == "r")
        if keep == "base" and is_novel:
            continue
        kept.append((category, "novel" if is_novel else "base"))
    return Metadata(name=name, thing_classes=[c["name"] for c, _ in kept],
                    class_splits=[s for _, s in kept],
                    thing_dataset_id_to_contiguous_id={c["id"]: k for k, (c, _) in enumerate(kept)},
                    json_file=str(json_file), image_root=str(image_root),
                    evaluator_type=evaluator_type, keep=keep,
                    class_descriptions={c["name"]: c["def"] for c in categories
                                        if isinstance(c.get("def"), str) and c["def"].strip()})


def load_coco_json(json_file: str, image_root: str, metadata: Metadata) -> list[dict]:
    """Dataset dicts (catalog module doc) of the images of ``json_file``; annotations of
    categories outside ``metadata`` (novel ones in a base-only set) are left out."""
    data = _read_json(json_file, metadata.name)
    id_map = metadata.thing_dataset_id_to_contiguous_id
    all_ids = {c["id"] for c in data["categories"]}
    per_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    dropped: Counter = Counter()
    dicts = []
    for image in data["images"]:
        # LVIS images have no file_name: their coco_url ends in "<split>/<file>" under COCO's root
        file_name = image.get("file_name") or "/".join(image.get("coco_url", "").split("/")[-2:])
        height, width = image["height"], image["width"]
        annotations = []
        for ann in per_image.get(image["id"], []):
            category_id = ann.get("category_id")
            if category_id not in all_ids:
                dropped["unknown category id"] += 1
                continue
            if category_id not in id_map:
                continue  # a removed (novel) category
            x, y, w, h = ann["bbox"]
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(width), x + w), min(float(height), y + h)
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                dropped["empty box after clipping to the image"] += 1
                continue
            record = {"bbox": [x1, y1, x2 - x1, y2 - y1], "bbox_mode": BoxMode.XYWH_ABS,
                      "category_id": id_map[category_id], "iscrowd": ann.get("iscrowd", 0)}
            if "segmentation" in ann:
                record["segmentation"] = ann["segmentation"]
            if "pseudo_score" in ann:
                record["pseudo_score"] = float(ann["pseudo_score"])
            annotations.append(record)
        dicts.append({"file_name": str(Path(image_root) / file_name), "height": height,
                      "width": width, "image_id": image["id"], "annotations": annotations})
    if dropped:
        logger.warning("%s: dropped %s", json_file,
                       ", ".join(f"{n} annotations ({why})" for why, n in dropped.items()))
    return dicts


def register_coco_instances(name: str, json_file: str, image_root: str,
                            novel: Sequence[str] = (), keep: str = "all",
                            evaluator_type: str = "coco") -> None:
    """Register a COCO-format instances file as dataset ``name`` (module doc)."""
    def metadata() -> Metadata:
        return coco_metadata(name, json_file, image_root, novel, keep, evaluator_type)

    DatasetCatalog.register(name, lambda: load_coco_json(json_file, image_root,
                                                         DatasetCatalog.metadata(name)), metadata)

