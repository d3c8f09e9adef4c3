"""Built-in datasets, read from ``$OVDET_DATASETS`` (default ``./datasets``) when first used.

| name | file (under ``$OVDET_DATASETS``) | classes |
|---|---|---|
| ``toyworld_train`` | ``toyworld/annotations/instances_train.json`` | base only |
| ``toyworld_train_pseudo`` | ``toyworld/annotations/pseudo_train.json`` | all (pseudo boxes) |
| ``toyworld_val`` | ``toyworld/annotations/instances_val.json`` | base + novel |
| ``coco_ovd_train`` | ``coco/annotations/instances_train2017_ovd_base.json`` | 48 base |
| ``coco_ovd_val`` | ``coco/annotations/instances_val2017_ovd.json`` | 48 base + 17 novel |
| ``lvis_v1_ovd_train`` | ``lvis/lvis_v1_train_ovd_base.json`` | common + frequent |
| ``lvis_v1_ovd_val`` | ``lvis/lvis_v1_val_ovd.json`` | all (rare = novel) |

``pseudo_train.json`` is made by ``tools/generate_pseudo_boxes.py`` (``make demo-pseudo``).
The OVD files are made by ``datasets/prepare_coco_ovd.py`` and ``datasets/prepare_lvis_ovd.py``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .catalog import DatasetCatalog
from .coco import coco_metadata, load_coco_json

DATASETS_ENV = "OVDET_DATASETS"

# name: (json file, image root, keep, evaluator type), paths relative to $OVDET_DATASETS
BUILTIN_DATASETS: dict[str, tuple[str, str, str, str]] = {
    "toyworld_train": ("toyworld/annotations/instances_train.json", "toyworld/train", "base", "coco"),
    "toyworld_train_pseudo": ("toyworld/annotations/pseudo_train.json", "toyworld/train", "all",
                              "coco"),
    "toyworld_val": ("toyworld/annotations/instances_val.json", "toyworld/val", "all", "coco"),
    "coco_ovd_train": ("coco/annotations/instances_train2017_ovd_base.json", "coco/train2017",
                       "base", "coco"),
    "coco_ovd_val": ("coco/annotations/instances_val2017_ovd.json", "coco/val2017", "all", "coco"),
    "lvis_v1_ovd_train": ("lvis/lvis_v1_train_ovd_base.json", "coco", "base", "lvis"),
    "lvis_v1_ovd_val": ("lvis/lvis_v1_val_ovd.json", "coco", "all", "lvis"),
}


def datasets_root() -> Path:
    """``$OVDET_DATASETS``, default ``./datasets``."""
    return Path(os.environ.get(DATASETS_ENV) or "datasets")


def _register(name: str, json_rel: str, image_rel: str, keep: str, evaluator_type: str) -> None:
    def paths() -> tuple[str, str]:
        return str(datasets_root() / json_rel), str(datasets_root() / image_rel)

    def metadata():
        return coco_metadata(name, *paths(), keep=keep, evaluator_type=evaluator_type)

    DatasetCatalog.register(name, lambda: load_coco_json(*paths(), DatasetCatalog.metadata(name)),
                            metadata)


for _name, _spec in BUILTIN_DATASETS.items():
    _register(_name, *_spec)
