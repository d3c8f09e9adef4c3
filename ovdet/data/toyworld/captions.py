"""Noisy captions of toy scenes, in varied templates.

Captions name the things (with counts and plurals, occasionally by a synonym), sometimes the
stuff, and sometimes leave one thing category out, as real captions do.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .categories import STUFF_BY_ID, THING_BY_ID

OMIT_PROBABILITY = 0.15  # a caption of two or more categories drops one of them
STUFF_MENTION_PROBABILITY = 0.5
SYNONYM_PROBABILITY = 0.1
NUMBER_WORDS = {2: "two", 3: "three", 4: "four"}

THING_TEMPLATES = (
    "a photo of {things}.",
    "there is {things} in this picture.",
    "a picture showing {things}.",
    "{things}.",
    "a close-up of {things}.",
    "an image with {things}.",
)
STUFF_TEMPLATES = (
    "{things} on the {stuff}.",
    "a photo of {things} with {stuff} in the background.",
    "{things} lying in front of the {stuff}.",
    "a picture of {stuff} and {things}.",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _phrase(rng: np.random.Generator, category_id: int, count: int) -> str:
    category = THING_BY_ID[category_id]
    if category.synonyms and rng.random() < SYNONYM_PROBABILITY:
        name = category.synonyms[int(rng.integers(len(category.synonyms)))]
        plural = name + "s"
    else:
        name, plural = category.name, category.plural
    if count == 1:
        return f"{_article(name)} {name}"
    return f"{NUMBER_WORDS.get(count, 'some')} {plural}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def make_caption(rng: np.random.Generator, thing_ids: list[int], stuff_ids: list[int]) -> str:
    """A caption for things ``thing_ids`` (one entry per instance) on stuff ``stuff_ids``."""
    counts = Counter(thing_ids)
    categories = [int(c) for c in rng.permutation(sorted(counts))]
    if len(categories) >= 2 and rng.random() < OMIT_PROBABILITY:
        categories.pop(int(rng.integers(len(categories))))
    things = _join([_phrase(rng, c, counts[c]) for c in categories]) if categories else "nothing"
    if stuff_ids and rng.random() < STUFF_MENTION_PROBABILITY:
        stuff = STUFF_BY_ID[stuff_ids[int(rng.integers(len(stuff_ids)))]].name
        template = STUFF_TEMPLATES[int(rng.integers(len(STUFF_TEMPLATES)))]
        return template.format(things=things, stuff=stuff)
    return THING_TEMPLATES[int(rng.integers(len(THING_TEMPLATES)))].format(things=things)
