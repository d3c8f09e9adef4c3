"""Built-in datasets, read from ``$OVDET_DATASETS`` (default ``./datasets``) when first used.

| name | file (under ``$OVDET_DATASETS``) | classes |
|---|---|---|
| ``toyworld_train`` | ``toyworld/annotations/instances_train.json`` | base only |
| ``toyworld_train_pseudo`` | ``toyworld/annotations/pseudo_train.json`` | all (pseudo boxes) |
| ``toyworld_train_image_labels`` | ``toyworld/annotations/image_labels_train.json`` | all (image labels) |
| ``toyworld_val`` | ``toyworld/annotations/instances_val.json`` | base + novel |
| ``coco_ovd_train`` | ``coco/annotations/instances_train2017_ovd_base.json`` | 48 base |
| ``coco_ovd_val`` | ``coco/annotations/instances_val2017_ovd.json`` | 48 base + 17 novel |
| ``lvis_v1_ovd_train`` | ``lvis/lvis_v1_train_ovd_base.json`` | common + frequent |
| ``lvis_v1_ovd_val`` | ``lvis/lvis_v1_val_ovd.json`` | all (rare = novel) |
| ``toyworld_train_panoptic`` | ``toyworld/annotations/panoptic_train.json`` | base things + stuff |
| ``toyworld_val_panoptic`` | ``toyworld/annotations/panoptic_val.json`` | all things + stuff |
| ``coco_panoptic_ovd_train`` | ``coco/annotations/panoptic_train2017_ovd_base.json`` | 63 + 53 stuff |
| ``coco_panoptic_ovd_val`` | ``coco/annotations/panoptic_val2017_ovd.json`` | 63 + 17 + 53 stuff |

Panoptic datasets (:mod:`ovdet.data.panoptic`; classes: things, then stuff) read their PNGs from
the json's folder: ``annotations/panoptic_SPLIT/`` (toy world) and COCO's own
``panoptic_{train,val}2017/`` (detectron2's layout; shared by the OVD files, never rewritten);
images from ``toyworld/SPLIT`` and ``coco/{train,val}2017``. The novel things of a base-only set
are void. COCO's panoptic things are the 48 base and 17 novel of the OVD split plus, as base, the
15 COCO categories outside it (``prepare_coco_panoptic.py --others``).

``pseudo_train.json`` is made by ``tools/generate_pseudo_boxes.py`` (``make demo-pseudo``); named in
``DATASETS.PSEUDO_BOXES`` it gives ``toyworld_train``'s images their unlabelled objects
(:mod:`ovdet.data.unlabelled`);
``image_labels_train.json`` (one box per caption-named class: the detector's best proposal for it;
train with it in ``DATASETS.IMAGE_LABELLED``) by ``tools/self_train_labels.py``
(``make demo-prompts``).
The OVD files are made by ``datasets/prepare_coco_ovd.py``, ``datasets/prepare_lvis_ovd.py`` and
``datasets/prepare_coco_panoptic.py``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .catalog import DatasetCatalog
from .coco import coco_metadata, load_coco_json
from .panoptic import coco_panoptic_metadata, load_coco_panoptic_json

DATASETS_ENV = "OVDET_DATASETS"

# name: (json file, image root, keep, evaluator type), paths relative to $OVDET_DATASETS
BUILTIN_DATASETS: dict[str, tuple[str, str, str, str]] = {
    "toyworld_train": ("toyworld/annotations/instances_train.json", "toyworld/train", "base", "coco"),
    "toyworld_train_pseudo": ("toyworld/annotations/pseudo_train.json", "toyworld/train", "all",
                              "coco"),
    "toyworld_train_image_labels": ("toyworld/annotations/image_labels_train.json",
                                    "toyworld/train", "all", "coco"),
    "toyworld_val": ("toyworld/annotations/instances_val.json", "toyworld/val", "all", "coco"),
    "coco_ovd_train": ("coco/annotations/instances_train2017_ovd_base.json", "coco/train2017",
                       "base", "coco"),
    "coco_ovd_val": ("coco/annotations/instances_val2017_ovd.json", "coco/val2017", "all", "coco"),
    "lvis_v1_ovd_train": ("lvis/lvis_v1_train_ovd_base.json", "coco", "base", "lvis"),
    "lvis_v1_ovd_val": ("lvis/lvis_v1_val_ovd.json", "coco", "all", "lvis"),
}

# name: (panoptic json, PNG folder, image root, keep), paths relative to $OVDET_DATASETS
BUILTIN_PANOPTIC_DATASETS: dict[str, tuple[str, str, str, str]] = {
    "toyworld_train_panoptic": ("toyworld/annotations/panoptic_train.json",
                                "toyworld/annotations/panoptic_train", "toyworld/train", "base"),
    "toyworld_val_panoptic": ("toyworld/annotations/panoptic_val.json",
                              "toyworld/annotations/panoptic_val", "toyworld/val", "all"),
    "coco_panoptic_ovd_train": ("coco/annotations/panoptic_train2017_ovd_base.json",
                                "coco/panoptic_train2017", "coco/train2017", "base"),
    "coco_panoptic_ovd_val": ("coco/annotations/panoptic_val2017_ovd.json",
                              "coco/panoptic_val2017", "coco/val2017", "all"),
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


def _register_panoptic(name: str, json_rel: str, pngs_rel: str, image_rel: str, keep: str) -> None:
    def paths() -> tuple[str, str, str]:
        return tuple(str(datasets_root() / rel) for rel in (json_rel, pngs_rel, image_rel))

    DatasetCatalog.register(
        name, lambda: load_coco_panoptic_json(*paths(), DatasetCatalog.metadata(name)),
        lambda: coco_panoptic_metadata(name, *paths(), keep=keep))


for _name, _spec in BUILTIN_PANOPTIC_DATASETS.items():
    _register_panoptic(_name, *_spec)
