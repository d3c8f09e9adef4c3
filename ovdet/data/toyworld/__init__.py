"""The toy world: a synthetic, seed-deterministic world of things on stuff, with captions, written
as real COCO instances / captions / panoptic files (see :mod:`.writer` for the layout)."""
from .categories import (BASE_NAMES, NOVEL_NAMES, STUFF_CATEGORIES, THING_CATEGORIES,
                         instances_categories, panoptic_categories)
from .scene import Scene, Segment, render_scene
from .writer import decode_segment_ids, default_seed, scene_for, write_split

__all__ = [
    "BASE_NAMES", "NOVEL_NAMES", "STUFF_CATEGORIES", "THING_CATEGORIES", "Scene", "Segment",
    "decode_segment_ids", "default_seed", "instances_categories", "panoptic_categories",
    "render_scene", "scene_for", "write_split",
]
