"""Stuff (amorphous background) names: COCO panoptic's 53 stuff categories as plain words.

COCO panoptic merges COCO-Stuff's 91 stuff classes into 53 and names them with hyphenated tags
("wall-other-merged", "floor-wood", "door-stuff"). :data:`COCO_STUFF_NAMES` holds the same 53
categories, in COCO panoptic's id order, written as a caption would say them ("wall",
"wooden floor", "door"), which is what CLIP's text encoder reads best. Pseudo-box generation uses
them as background names for real images (``tools/generate_pseudo_boxes.py --background auto``).
"""
from __future__ import annotations

COCO_STUFF_NAMES: tuple[str, ...] = (
    "banner", "blanket", "bridge", "cardboard", "counter", "curtain", "door", "wooden floor",
    "flower", "fruit", "gravel", "house", "light", "mirror", "net", "pillow", "platform",
    "playing field", "railroad", "river", "road", "roof", "sand", "sea", "shelf", "snow",
    "stairs", "tent", "towel", "brick wall", "stone wall", "tile wall", "wooden wall", "water",
    "window blind", "window", "tree", "fence", "ceiling", "sky", "cabinet", "table", "floor",
    "pavement", "mountain", "grass", "dirt", "paper", "food", "building", "rock", "wall", "rug",
)
