"""Categories of the toy world: things (own colour family and shape) and stuff (muted textures).

Every thing category has a colour family that no other category shares, a characteristic shape and
a name, so that a tiny CLIP learns all of them from captions in minutes (colour is what a tiny ViT
picks up first; shape comes second). Stuff textures are muted (low saturation, mid values) so that
they never collide with a thing colour.

The base/novel split is fixed: novel categories never contribute boxes to detector training.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThingCategory:
    """A thing category: COCO ``id``, ``name``, ``plural``, extra ``synonyms``, RGB ``color``,
    ``shape`` (a key of :data:`ovdet.data.toyworld.shapes.SHAPES`), ``split`` ("base"/"novel")
    and a short ``description`` (written as the json's ``def``, as LVIS does)."""

    id: int
    name: str
    plural: str
    color: tuple[int, int, int]
    shape: str
    split: str
    synonyms: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""


@dataclass(frozen=True)
class StuffCategory:
    """A stuff category: COCO ``id``, ``name``, mean RGB ``color`` and ``texture`` kind."""

    id: int
    name: str
    color: tuple[int, int, int]
    texture: str


THING_CATEGORIES: tuple[ThingCategory, ...] = (
    ThingCategory(1, "tomato", "tomatoes", (215, 35, 35), "disc", "base", (),
                  description="a red round fruit"),
    ThingCategory(2, "orange", "oranges", (250, 135, 20), "hexagon", "base", (),
                  description="an orange six-sided fruit"),
    ThingCategory(3, "banana", "bananas", (245, 220, 40), "crescent", "novel", ("plantain",),
                  description="a yellow curved fruit"),
    ThingCategory(4, "lime", "limes", (140, 215, 40), "triangle", "base", (),
                  description="a green triangular fruit"),
    ThingCategory(5, "cucumber", "cucumbers", (30, 110, 45), "capsule", "base", (),
                  description="a long dark green vegetable"),
    ThingCategory(6, "ice cube", "ice cubes", (70, 215, 230), "square", "novel", (),
                  description="a cyan square block of ice"),
    ThingCategory(7, "blueberry", "blueberries", (40, 70, 210), "disc", "base", (),
                  description="a small round blue berry"),
    ThingCategory(8, "grape", "grapes", (125, 45, 165), "cluster", "novel", (),
                  description="a cluster of purple berries"),
    ThingCategory(9, "dragon fruit", "dragon fruits", (235, 55, 160), "star", "base", ("pitaya",),
                  description="a pink star-shaped fruit"),
    ThingCategory(10, "coconut", "coconuts", (115, 70, 35), "octagon", "base", (),
                  description="a brown eight-sided nut"),
    ThingCategory(11, "egg", "eggs", (240, 238, 225), "oval", "novel", (),
                  description="a white oval egg"),
    ThingCategory(12, "olive", "olives", (35, 35, 30), "ellipse", "base", (),
                  description="a small black oval fruit"),
)

STUFF_CATEGORIES: tuple[StuffCategory, ...] = (
    StuffCategory(13, "sky", (150, 160, 175), "gradient"),
    StuffCategory(14, "grass", (105, 122, 96), "streaks"),
    StuffCategory(15, "water", (96, 110, 126), "waves"),
    StuffCategory(16, "sand", (168, 158, 138), "speckle"),
    StuffCategory(17, "wall", (132, 128, 126), "bricks"),
)

BASE_NAMES: tuple[str, ...] = tuple(c.name for c in THING_CATEGORIES if c.split == "base")
NOVEL_NAMES: tuple[str, ...] = tuple(c.name for c in THING_CATEGORIES if c.split == "novel")
THING_BY_ID: dict[int, ThingCategory] = {c.id: c for c in THING_CATEGORIES}
STUFF_BY_ID: dict[int, StuffCategory] = {c.id: c for c in STUFF_CATEGORIES}


def instances_categories() -> list[dict]:
    """Categories of the instances json (things only), COCO schema plus ``split`` and ``synonyms``."""
    return [
        {"id": c.id, "name": c.name, "supercategory": "food", "split": c.split,
         "synonyms": [c.name, c.plural, *c.synonyms], "def": c.description}
        for c in THING_CATEGORIES
    ]


def panoptic_categories() -> list[dict]:
    """Categories of the panoptic json, COCO panoptic schema (``isthing``, ``color``) plus ``split``."""
    things = [
        {"id": c.id, "name": c.name, "supercategory": "food", "isthing": 1, "color": list(c.color),
         "split": c.split}
        for c in THING_CATEGORIES
    ]
    stuff = [
        {"id": c.id, "name": c.name, "supercategory": "background", "isthing": 0,
         "color": list(c.color)}
        for c in STUFF_CATEGORIES
    ]
    return things + stuff
