"""Caption noun matching: which vocabulary categories a caption names.

A category is named by its name, its synonyms and their plurals ("tomato" -> "tomatoes",
"berry" -> "berries", "box" -> "boxes", plus any plural listed among the synonyms). Matching is
whole-word and case-insensitive on a normalised text: accents are stripped (NFKD), and every
character that is not a letter or a digit separates words, so punctuation and hyphens never
block a match ("ice-cube," names "ice cube") and a name never matches inside a longer word ("cat"
does not match "category"). Where names overlap ("dragon fruit" and "fruit") the longest name at a
position wins. LVIS-style qualifiers in parentheses are dropped from names ("bat_(animal)" is
named "bat"). A category is reported once per caption, in order of first mention.

Vocabulary files (:meth:`NounVocabulary.from_file`):

* a JSON list of categories ``[{"id": 1, "name": "tomato", "synonyms": ["tomatoes"]}, ...]``,
  or a COCO instances / LVIS json (its ``categories``, whose ``synonyms`` are used when present);
* a text file, one category per line, ``name[, synonym, ...]`` (ids 1..N in line order).
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..utils.io import read_json

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Category:
    """A vocabulary category: COCO ``id``, ``name`` and the normalised phrases that name it."""

    id: int
    name: str
    phrases: tuple[str, ...]


def normalize_text(text: str) -> str:
    """Lower-case ASCII words separated by single spaces (accents stripped, punctuation and
    other symbols turned into spaces)."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(re.split(r"[^a-z0-9]+", ascii_text)).strip()


def plurals(phrase: str) -> list[str]:
    """English plurals of the last word of a normalised phrase ("ice cube" -> ["ice cubes"]);
    a consonant + "o" ending gets both forms ("tomatos", "tomatoes")."""
    head, _, last = phrase.rpartition(" ")
    if re.search(r"(s|x|z|ch|sh)$", last):
        forms = [last + "es"]
    elif re.search(r"[^aeiou]y$", last):
        forms = [last[:-1] + "ies"]
    elif re.search(r"[^aeiou]o$", last):
        forms = [last + "s", last + "es"]
    else:
        forms = [last + "s"]
    return [f"{head} {form}" if head else form for form in forms]


def name_phrase(text: str) -> str:
    """A category name or synonym as matched: LVIS-style qualifiers in parentheses dropped
    ("bat_(animal)" -> "bat"), then :func:`normalize_text`."""
    return normalize_text(re.sub(r"\([^)]*\)", " ", text))


def _checked_entry(index: int, entry) -> tuple[int, str, list[str]]:
    """(id, name, synonyms) of vocabulary entry ``index``, or a ValueError naming it."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
            or not name_phrase(entry["name"]):
        raise ValueError(f"vocabulary entry {index} has no usable 'name': {entry!r}")
    category_id = entry.get("id", index + 1)
    if not isinstance(category_id, int) or isinstance(category_id, bool):
        raise ValueError(f"vocabulary entry {index} ({entry['name']!r}) needs an integer 'id', "
                         f"got {category_id!r}")
    synonyms = entry.get("synonyms") or []
    if not isinstance(synonyms, list) or not all(isinstance(s, str) for s in synonyms):
        raise ValueError(f"'synonyms' of vocabulary entry {index} ({entry['name']!r}) must be a "
                         f"list of strings, got {synonyms!r}")
    return category_id, entry["name"], synonyms


class NounVocabulary:
    """Categories and their names; :meth:`match` finds the ones a caption names (module doc).

    A phrase that names one category explicitly (name or synonym) belongs to it even when it is
    also another category's generated plural ("glasses"); a phrase that several categories name
    explicitly, or that is only the generated plural of several, is ambiguous: it is left out of
    matching, with a warning.

    Args:
        categories: dicts with an integer ``id`` (default: position + 1), ``name`` and optional
            ``synonyms`` (a list of strings).
    """

    def __init__(self, categories: Sequence[dict]) -> None:
        if not categories:
            raise ValueError("the vocabulary is empty: give at least one category")
        entries = [_checked_entry(index, entry) for index, entry in enumerate(categories)]
        ids = [category_id for category_id, _, _ in entries]
        if len(set(ids)) != len(ids):
            raise ValueError("vocabulary category ids must be unique")
        explicit: dict[str, set[int]] = {}
        generated: dict[str, set[int]] = {}
        ordered: dict[int, list[str]] = {}
        for category_id, name, synonyms in entries:
            phrases = [p for p in dict.fromkeys(name_phrase(t) for t in (name, *synonyms)) if p]
            forms = list(dict.fromkeys([*phrases, *(q for p in phrases for q in plurals(p))]))
            ordered[category_id] = forms
            for phrase in phrases:
                explicit.setdefault(phrase, set()).add(category_id)
            for phrase in forms[len(phrases):]:
                generated.setdefault(phrase, set()).add(category_id)
        owner: dict[str, int] = {}
        ambiguous = []
        for phrase in {**explicit, **generated}:
            owners = explicit.get(phrase) or generated[phrase]
            if len(owners) == 1:
                owner[phrase] = next(iter(owners))
            else:
                ambiguous.append(phrase)
        if ambiguous:
            logger.warning("%d names belong to several categories and are not matched: %s",
                           len(ambiguous), ", ".join(sorted(ambiguous)[:10]))
        self.categories = [Category(category_id, name, tuple(p for p in ordered[category_id]
                                                             if owner.get(p) == category_id))
                           for category_id, name, _ in entries]
        self._owner = owner
        self._entries = {category_id: categories[k] for k, (category_id, _, _)
                         in enumerate(entries)}
        alternatives = "|".join(re.escape(p) for p in sorted(owner, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])") \
            if owner else None

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "NounVocabulary":
        """Categories with ids 1..N and no synonyms beyond plurals."""
        return cls([{"id": k + 1, "name": n} for k, n in enumerate(names)])

    @classmethod
    def from_file(cls, path: str | Path) -> "NounVocabulary":
        """Read a vocabulary file (module doc)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        if path.suffix == ".json":
            data = read_json(path, "vocabulary file")
            categories = data.get("categories") if isinstance(data, dict) else data
            if not isinstance(categories, list):
                raise ValueError(f"{path} must hold a list of categories or a 'categories' key")
            return cls(categories)
        text = path.read_text(encoding="utf-8")
        rows = [line.split(",") for line in text.splitlines() if line.strip()]
        return cls([{"id": k + 1, "name": row[0].strip(),
                     "synonyms": [s.strip() for s in row[1:] if s.strip()]}
                    for k, row in enumerate(rows)])

    def coco_categories(self, keep: Sequence[str] = ("supercategory", "split", "synonyms",
                                                      "frequency")) -> list[dict]:
        """The categories for a COCO json: ``id``, ``name`` and those keys of ``keep`` that the
        entry the category was made from has (e.g. a vocabulary file's ``split``)."""
        return [{"id": c.id, "name": c.name,
                 **{k: self._entries[c.id][k] for k in keep if k in self._entries[c.id]}}
                for c in self.categories]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    def match(self, caption: str) -> list[int]:
        """Ids of the categories ``caption`` names, each once, in order of first mention."""
        found: list[int] = []
        if self._pattern is None:
            return found
        for match in self._pattern.finditer(normalize_text(caption)):
            category_id = self._owner[match.group(0)]
            if category_id not in found:
                found.append(category_id)
        return found
