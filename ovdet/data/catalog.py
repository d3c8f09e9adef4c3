"""Named datasets: a catalog of loaders of dataset dicts, and their metadata.

Dataset dicts follow detectron2's form::

    {"file_name": str, "height": int, "width": int, "image_id": int,
     "annotations": [{"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS,
                      "category_id": int (contiguous index into metadata.thing_classes),
                      "segmentation": RLE dict | polygons | absent, "iscrowd": 0 | 1}]}

Panoptic datasets (:mod:`ovdet.data.panoptic`) add, per record::

     "pan_seg_file_name": str (the COCO panoptic PNG: segment id = R + 256 G + 256^2 B),
     "segments_info": [{"id": int (segment id in the PNG), "category_id": int (contiguous index
                        into metadata.panoptic_classes), "isthing": bool, "iscrowd": 0 | 1,
                        "area": int, "bbox": [x, y, w, h]}]

and their "annotations" are the thing segments (boxes, no "segmentation": the masks are in the
PNG). Pixels whose id is not in ``segments_info`` are void for training.

Metadata of a dataset: ``thing_classes`` (names, contiguous order), ``class_splits`` ("base" or
"novel" per class), ``thing_dataset_id_to_contiguous_id``, ``json_file``, ``image_root``,
``evaluator_type`` ("coco", "lvis" or "coco_panoptic"), ``class_descriptions`` ({name: the
category's ``def`` text} for every category of the json that has one, novel ones included, as
LVIS and the toy world write them; used by learned region prompts). Panoptic datasets also have
``stuff_classes`` and ``stuff_dataset_id_to_contiguous_id`` (index into ``stuff_classes``; stuff is
never novel), ``panoptic_json``, ``panoptic_root`` (the folder of the PNGs) and
``panoptic_classes`` = ``thing_classes + stuff_classes``, the panoptic class index space (things
first, then stuff).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable, Iterable


class BoxMode(IntEnum):
    """How a box is written: corners (x1, y1, x2, y2) or corner and size (x, y, w, h), pixels."""

    XYXY_ABS = 0
    XYWH_ABS = 1


@dataclass
class Metadata:
    """What is known of a dataset besides its dicts (module doc)."""

    name: str
    thing_classes: list[str] = field(default_factory=list)
    class_splits: list[str] = field(default_factory=list)
    thing_dataset_id_to_contiguous_id: dict[int, int] = field(default_factory=dict)
    json_file: str = ""
    image_root: str = ""
    evaluator_type: str = "coco"
    keep: str = "all"
    stuff_classes: list[str] = field(default_factory=list)
    stuff_dataset_id_to_contiguous_id: dict[int, int] = field(default_factory=dict)
    panoptic_json: str = ""
    panoptic_root: str = ""
    class_descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def base_classes(self) -> list[str]:
        return [n for n, s in zip(self.thing_classes, self.class_splits) if s == "base"]

    @property
    def novel_classes(self) -> list[str]:
        return [n for n, s in zip(self.thing_classes, self.class_splits) if s == "novel"]

    @property
    def panoptic_classes(self) -> list[str]:
        """Things, then stuff: the class index space of panoptic ``category_id``s."""
        return self.thing_classes + self.stuff_classes


class UnknownDatasetError(KeyError):
    """A dataset name that nobody registered."""

    def __str__(self) -> str:
        return str(self.args[0])


class DatasetError(ValueError):
    """A registered dataset whose files cannot be used; the message names the dataset and file."""


class _Catalog:
    """Name -> (loader of dataset dicts, metadata factory); both are called lazily, so that
    registering a dataset whose files are absent costs nothing until it is used."""

    def __init__(self) -> None:
        self._loaders: dict[str, Callable[[], list[dict]]] = {}
        self._metadata: dict[str, Callable[[], Metadata]] = {}
        self._metadata_cache: dict[str, Metadata] = {}

    def register(self, name: str, loader: Callable[[], list[dict]],
                 metadata: Callable[[], Metadata]) -> None:
        self._loaders[name] = loader
        self._metadata[name] = metadata
        self._metadata_cache.pop(name, None)

    def _check(self, name: str) -> None:
        self.check([name])

    def check(self, names: Iterable[str], key: str = "") -> None:
        """Raise one :class:`UnknownDatasetError` naming every unregistered name of ``names``
        (with the closest registered name, and ``key``, e.g. ``DATASETS.TEST``, when given) and
        listing the registered ones."""
        unknown = [name for name in names if name not in self._loaders]
        if not unknown:
            return
        described = []
        for name in unknown:
            close = difflib.get_close_matches(str(name), self._loaders, n=1, cutoff=0.6)
            described.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        what = f"dataset {described[0]} is" if len(described) == 1 \
            else f"datasets {', '.join(described)} are"
        where = f" (named in {key})" if key else ""
        known = ", ".join(sorted(self._loaders)) or "none"
        raise UnknownDatasetError(
            f"{what} not registered{where}; registered: {known}. "
            "Register your own with ovdet.data.register_coco_instances(...) or train_net's "
            "--dataset NAME=JSON:IMAGE_ROOT")

    def get(self, name: str) -> list[dict]:
        """The dataset dicts of ``name`` (loaded now)."""
        self._check(name)
        return self._loaders[name]()

    def metadata(self, name: str) -> Metadata:
        self._check(name)
        if name not in self._metadata_cache:
            self._metadata_cache[name] = self._metadata[name]()
        return self._metadata_cache[name]

    def names(self) -> list[str]:
        return sorted(self._loaders)

    def __contains__(self, name: Any) -> bool:
        return name in self._loaders


DatasetCatalog = _Catalog()
