"""Seen / unseen splits of COCO 2017 for zero-shot detection (ZSD, GZSD), by name.

* ``coco_65_15``: 65 seen and 15 unseen categories of COCO's 80, as published by S. Rahman,
  S. Khan and N. Barnes, "Polarity Loss for Zero-shot Object Detection" (arXiv:1811.08982;
  AAAI 2020 / IEEE TIP). Unseen: airplane, train, parking meter, cat, bear, suitcase, frisbee,
  snowboard, fork, sandwich, hot dog, toilet, mouse, toaster, hair drier. Every category is
  evaluated: the split covers all 80.
* ``coco_48_17``: the 48 seen (base) and 17 unseen (novel) categories of
  :mod:`ovdet.data.ovd_splits` (Bansal et al. 2018 / OVR-CNN); the other 15 categories are
  left out of training and evaluation, so a ground truth for it holds the 65 categories only
  (``datasets/prepare_coco_ovd.py`` writes it).

Splits are stored as COCO 2017 category ids and named through :data:`COCO_2017_NAMES`, so that a
json whose ids mean other categories is refused (:func:`split_category_ids`) instead of being
scored on the wrong classes.
"""
from __future__ import annotations

from collections.abc import Sequence

from .ovd_splits import COCO_OVD_BASE_IDS, COCO_OVD_NAMES, COCO_OVD_NOVEL_IDS

# the 15 COCO 2017 categories outside the 48/17 split; with COCO_OVD_NAMES, all 80
_OUTSIDE_48_17: dict[int, str] = {
    10: "traffic light", 11: "fire hydrant", 13: "stop sign", 14: "parking meter",
    37: "sports ball", 39: "baseball bat", 40: "baseball glove", 43: "tennis racket",
    46: "wine glass", 58: "hot dog", 64: "potted plant", 67: "dining table", 77: "cell phone",
    88: "teddy bear", 89: "hair drier",
}

# COCO 2017's category id -> name, all 80 categories, in id order
COCO_2017_NAMES: dict[int, str] = dict(sorted({**COCO_OVD_NAMES, **_OUTSIDE_48_17}.items()))

COCO_ZSD_UNSEEN_IDS: tuple[int, ...] = (5, 7, 14, 17, 23, 33, 34, 36, 48, 54, 58, 70, 74, 80, 89)
COCO_ZSD_SEEN_IDS: tuple[int, ...] = tuple(i for i in COCO_2017_NAMES
                                           if i not in COCO_ZSD_UNSEEN_IDS)

# split name -> (seen COCO 2017 ids, unseen COCO 2017 ids)
ZSD_SPLIT_IDS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "coco_48_17": (COCO_OVD_BASE_IDS, COCO_OVD_NOVEL_IDS),
    "coco_65_15": (COCO_ZSD_SEEN_IDS, COCO_ZSD_UNSEEN_IDS),
}


def _names(ids: Sequence[int]) -> tuple[str, ...]:
    return tuple(COCO_2017_NAMES[i] for i in ids)


# split name -> (seen names, unseen names), each in COCO id order
ZSD_SPLITS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    name: (_names(seen), _names(unseen)) for name, (seen, unseen) in ZSD_SPLIT_IDS.items()}


def zsd_split(name: str) -> tuple[list[str], list[str]]:
    """``(seen names, unseen names)`` of the split ``name`` (a key of :data:`ZSD_SPLITS`), in
    COCO id order; ``ValueError`` listing the known splits for another name."""
    if name not in ZSD_SPLITS:
        raise ValueError(f"unknown zero-shot split {name!r}; known splits: {sorted(ZSD_SPLITS)}")
    seen, unseen = ZSD_SPLITS[name]
    return list(seen), list(unseen)


def coco_65_15_split() -> tuple[list[str], list[str]]:
    """The 65 seen and 15 unseen COCO 2017 category names of Rahman et al. (module doc)."""
    return zsd_split("coco_65_15")


def coco_48_17_split() -> tuple[list[str], list[str]]:
    """The 48 seen and 17 unseen COCO 2017 category names of :mod:`ovdet.data.ovd_splits`."""
    return zsd_split("coco_48_17")


def split_category_ids(name: str, categories: Sequence[dict]) -> tuple[list[int], list[int]]:
    """``(seen ids, unseen ids)`` of the split ``name`` in a COCO json whose ``categories``
    (``[{"id", "name"}]``) are checked against COCO 2017's.

    ``ValueError`` when ``name`` is not a split, when a category of the split is missing or
    carries another name at its id (a json whose ids mean something else), or when the json holds
    categories outside the split (the 48/17 protocol evaluates its 65 categories only).
    """
    zsd_split(name)  # refuses an unknown name
    seen, unseen = ZSD_SPLIT_IDS[name]
    names = {c["id"]: c["name"] for c in categories}
    missing = [f"{i} ({COCO_2017_NAMES[i]})" for i in (*seen, *unseen) if i not in names]
    if missing:
        raise ValueError(f"the json lacks categories of the {name} split: {', '.join(missing)}")
    renamed = [f"{i} is {names[i]!r}, not {COCO_2017_NAMES[i]!r}" for i in (*seen, *unseen)
               if names[i] != COCO_2017_NAMES[i]]
    if renamed:
        raise ValueError(f"not COCO 2017's category ids: {'; '.join(renamed)}")
    extra = sorted(set(names) - {*seen, *unseen})
    if extra:
        raise ValueError(f"the json holds {len(extra)} categories outside the {name} split "
                         f"(ids {extra[:10]}{' ...' if len(extra) > 10 else ''}); evaluate the "
                         f"split's {len(seen) + len(unseen)} categories only (for coco_48_17: "
                         f"the file datasets/prepare_coco_ovd.py writes)")
    return list(seen), list(unseen)
