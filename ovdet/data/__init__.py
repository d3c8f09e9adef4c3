"""Datasets: the catalog, COCO/LVIS readers, the mapper and loaders, and the toy world."""
from . import builtin  # noqa: F401  (registers the built-in datasets)
from .catalog import BoxMode, DatasetCatalog, Metadata
from .coco import load_coco_json, register_coco_instances

__all__ = ["BoxMode", "DatasetCatalog", "Metadata", "load_coco_json", "register_coco_instances"]
