"""The inputs of :mod:`tools/generate_pseudo_boxes.py`: caption files and vocabulary arguments
(the latter shared with ``tools/demo.py``).

Caption file format (JSON)::

    {"images": [{"id": 9, "file_name": "000009.jpg", "height": 480, "width": 640,
                 "captions": ["a cat on a sofa.", "..."]}, ...]}

``file_name`` is relative to the image root; ``id`` is an integer; ``height`` and ``width`` are
optional (the images' own sizes are used). :func:`group_coco_captions` makes it from a COCO
captions file (``captions_train2017.json``: ``images`` plus one ``annotations`` entry per
caption, ``{"image_id", "caption"}``); :func:`read_caption_records` reads either form, telling
them apart by their keys.

A vocabulary argument (:func:`load_vocabulary`) is a vocabulary file (a COCO / LVIS json's
``categories``, or a text file with one ``name[, synonym, ...]`` per line; see
:class:`~ovdet.pseudo.vocabulary.NounVocabulary`) or comma-separated names. It is a path when it
looks like one (it has a path separator, or ends in ``.json`` / ``.txt`` / ``.csv``): then it
must name an existing file, and is an error otherwise, never a class name; so a name with a "/"
("tv/monitor") goes in a text file. Without those marks it is a path only when it has no comma
and names an existing file; anything else (a name that matches a folder, too) is class names.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..modeling.vocabulary import check_class_names
from ..utils.io import read_json_dataset
from .vocabulary import NounVocabulary

VOCABULARY_SUFFIXES = (".json", ".txt", ".csv")

IMAGE_KEYS = ("id", "file_name", "height", "width")  # copied from COCO's image entries


def group_coco_captions(data: dict) -> tuple[list[dict], list[int]]:
    """COCO captions dict -> (caption records in image order, ids of images without a caption).
    Captions keep the order of the annotations; non-string captions are an error."""
    if not isinstance(data.get("annotations"), list):
        raise ValueError("a COCO captions file needs an 'annotations' list")
    captions: dict[int, list[str]] = {}
    for index, annotation in enumerate(data["annotations"]):
        caption = annotation.get("caption") if isinstance(annotation, dict) else None
        if not isinstance(caption, str) or "image_id" not in annotation:
            raise ValueError(f"caption annotation {index} needs 'image_id' and a string "
                             f"'caption', got {annotation!r}")
        captions.setdefault(annotation["image_id"], []).append(caption)
    records, without = [], []
    for image in data["images"]:
        missing = [k for k in ("id", "file_name") if k not in image]
        if missing:
            raise ValueError(f"image entry {image!r} lacks {missing}")
        if image["id"] not in captions:
            without.append(image["id"])
            continue
        records.append({**{k: image[k] for k in IMAGE_KEYS if k in image},
                        "captions": captions[image["id"]]})
    return records, without


def is_coco_captions(data: dict) -> bool:
    """Whether a caption json is COCO's own form (``annotations`` with ``caption``s, images
    without ``captions``) rather than ovdet's."""
    annotations = data.get("annotations")
    return isinstance(annotations, list) and not any(
        isinstance(image, dict) and "captions" in image for image in data["images"])


def read_caption_records(path: str | Path) -> list[dict]:
    """Records of a caption file (module doc), ovdet's form or COCO's (grouped with
    :func:`group_coco_captions`), checked: each a dict with an integer ``id`` (unique), a string
    ``file_name`` and a list ``captions`` (of anything: bad captions are reported per image by
    the generator)."""
    data = read_json_dataset(path, "ovdet or COCO captions", {"images": ()}, "captions file")
    if is_coco_captions(data):
        try:
            records, _ = group_coco_captions(data)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    else:
        records = data["images"]
    return check_image_records(path, records, "captions")


def check_image_records(path: str | Path, records: list, labels: str) -> list[dict]:
    """``records`` when each is a dict with an integer ``id`` (unique), a string ``file_name``
    and a list under ``labels`` (``"captions"``, or an image-labelled file's
    ``"pos_category_ids"``); else a ValueError naming ``path`` and the image."""
    seen: set[int] = set()
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: image {index} is not an object: {record!r}")
        missing = [k for k in ("id", "file_name", labels) if k not in record]
        if missing:
            raise ValueError(f"{path}: image {index} lacks {missing}")
        if not isinstance(record["id"], int) or isinstance(record["id"], bool):
            raise ValueError(f"{path}: image {index} needs an integer 'id', got {record['id']!r}")
        if not isinstance(record["file_name"], str) or not record["file_name"]:
            raise ValueError(f"{path}: 'file_name' of image {record['id']} must be a path string")
        if not isinstance(record[labels], list):
            raise ValueError(f"{path}: '{labels}' of image {record['id']} must be a list")
        if record["id"] in seen:
            raise ValueError(f"{path}: image id {record['id']} appears twice")
        seen.add(record["id"])
    return records


def looks_like_path(spec: str) -> bool:
    """Whether a vocabulary argument is meant as a file: it has a path separator or a
    vocabulary file suffix."""
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return any(s in spec for s in separators) or spec.lower().endswith(VOCABULARY_SUFFIXES)


def load_vocabulary(spec: str) -> NounVocabulary:
    """A vocabulary argument (module doc): a file, or comma-separated names. FileNotFoundError
    for a path-like ``spec`` that names no file; ValueError for no names."""
    if not spec.strip():
        raise ValueError("empty vocabulary: give names (\"a,b\") or a vocabulary file")
    path = Path(spec)
    if looks_like_path(spec):
        if path.is_dir():
            raise FileNotFoundError(f"vocabulary {spec} is a folder; give a .json or .txt file")
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {spec} (a name with '/' or a "
                                    "file suffix goes in a .txt file, one name per line)")
        return NounVocabulary.from_file(path)
    if "," not in spec and path.is_file():
        return NounVocabulary.from_file(path)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise ValueError(f"empty vocabulary: {spec!r}; give names (\"a,b\") or a file")
    return NounVocabulary.from_names(check_class_names(names))
