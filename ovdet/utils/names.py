"""Class names as text: how a name is embedded (:func:`prompt_name`) and the normal form names are
compared in (:func:`normalize_class_name`). Plain string functions, importable without torch."""
from __future__ import annotations

# suffixes of COCO panoptic's merged stuff names ("wall-other-merged" reads "wall")
STUFF_NAME_SUFFIXES = ("-merged", "-other", "-stuff")


def prompt_name(name: str) -> str:
    """The text a name is embedded as: LVIS's underscores read as spaces (``"bat (animal)"``),
    COCO panoptic's merge suffixes dropped (``"sky-other-merged"`` -> ``"sky"``), white space
    collapsed."""
    text = name.strip()
    while text.endswith(STUFF_NAME_SUFFIXES) and "-" in text[1:]:
        text = text[:text.rindex("-")]
    return " ".join(text.replace("_", " ").split())


def normalize_class_name(name: str) -> str:
    """The form names are compared in: ``" Tomato"`` -> ``"tomato"``, ``"bat_(animal)"`` ->
    ``"bat (animal)"``, ``"ice  cube"`` -> ``"ice cube"``."""
    return prompt_name(name).casefold()
