"""Caption noun matching: which vocabulary categories a caption names.

A category is named by its name, its synonyms and their plurals ("tomato" -> "tomatoes",
"berry" -> "berries", "box" -> "boxes", plus any plural listed among the synonyms). Matching is
whole-word and case-insensitive on a normalised text: accents are stripped (NFKD), and every
character that is not a letter or a digit separates words, so punctuation and hyphens never
block a match ("ice-cube," names "ice cube") and a name never matches inside a longer word ("cat"
does not match "category"). Where names overlap ("dragon fruit" and "fruit") the longest name at a
position wins. A category is reported once per caption, in order of first mention.

Vocabulary files (:meth:`NounVocabulary.from_file`):

* a JSON list of categories ``[{"id": 1, "name": "tomato", "synonyms": ["tomatoes"]}, ...]``,
  or a COCO instances / LVIS json (its ``categories``, whose ``synonyms`` are used when present);
* a text file, one category per line, ``name[, synonym, ...]`` (ids 1..N in line order).
"""
from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence


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


def _phrases(name: str, synonyms: Iterable[str]) -> tuple[str, ...]:
    phrases: list[str] = []
    for text in (name, *synonyms):
        phrase = normalize_text(text.replace("_", " "))
        for form in ([phrase, *plurals(phrase)] if phrase else []):
            if form not in phrases:
                phrases.append(form)
    return tuple(phrases)


class NounVocabulary:
    """Categories and their names; :meth:`match` finds the ones a caption names (module doc).

    Args:
        categories: dicts with ``id``, ``name`` and optional ``synonyms`` (list of strings).
    """

    def __init__(self, categories: Sequence[dict]) -> None:
        if not categories:
            raise ValueError("the vocabulary is empty: give at least one category")
        self.categories: list[Category] = []
        owner: dict[str, int] = {}
        for index, entry in enumerate(categories):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                    or not normalize_text(entry["name"]):
                raise ValueError(f"vocabulary entry {index} has no usable 'name': {entry!r}")
            category = Category(int(entry.get("id", index + 1)), entry["name"],
                                _phrases(entry["name"], entry.get("synonyms") or ()))
            for phrase in category.phrases:
                if phrase in owner and owner[phrase] != category.id:
                    raise ValueError(f"'{phrase}' names two categories ({owner[phrase]} and "
                                     f"{category.id}); remove it from one of them")
                owner[phrase] = category.id
            self.categories.append(category)
        ids = [c.id for c in self.categories]
        if len(set(ids)) != len(ids):
            raise ValueError("vocabulary category ids must be unique")
        self._owner = owner
        alternatives = "|".join(re.escape(p) for p in sorted(owner, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![a-z0-9])(?:{alternatives})(?![a-z0-9])")

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
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from None
            categories = data.get("categories") if isinstance(data, dict) else data
            if not isinstance(categories, list):
                raise ValueError(f"{path} must hold a list of categories or a 'categories' key")
            return cls(categories)
        rows = [line.split(",") for line in text.splitlines() if line.strip()]
        return cls([{"id": k + 1, "name": row[0].strip(),
                     "synonyms": [s.strip() for s in row[1:] if s.strip()]}
                    for k, row in enumerate(rows)])

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.categories]

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.categories]

    def match(self, caption: str) -> list[int]:
        """Ids of the categories ``caption`` names, each once, in order of first mention."""
        found: list[int] = []
        for match in self._pattern.finditer(normalize_text(caption)):
            category_id = self._owner[match.group(0)]
            if category_id not in found:
                found.append(category_id)
        return found
