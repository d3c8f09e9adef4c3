"""Caption files: the input of :mod:`tools/generate_pseudo_boxes.py`.

Format (JSON)::

    {"images": [{"id": 9, "file_name": "000009.jpg", "height": 480, "width": 640,
                 "captions": ["a cat on a sofa.", "..."]}, ...]}

``file_name`` is relative to the image root; ``id`` is an integer; ``height`` and ``width`` are
optional (the images' own sizes are used). :func:`group_coco_captions` makes it from a COCO
captions file (``captions_train2017.json``: ``images`` plus one ``annotations`` entry per
caption, ``{"image_id", "caption"}``).
"""
from __future__ import annotations

from pathlib import Path

from ..utils.io import read_json_dataset

IMAGE_KEYS = ("id", "file_name", "height", "width")  # copied from COCO's image entries
REQUIRED_KEYS = ("id", "file_name", "captions")


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


def read_caption_records(path: str | Path) -> list[dict]:
    """Records of a caption file (module doc), checked: each a dict with an integer ``id``
    (unique), a string ``file_name`` and a list ``captions`` (of anything: bad captions are
    reported per image by the generator)."""
    data = read_json_dataset(path, "ovdet captions", {"images": ()}, "captions file")
    seen: set[int] = set()
    for index, record in enumerate(data["images"]):
        if not isinstance(record, dict):
            raise ValueError(f"{path}: image {index} is not an object: {record!r}")
        missing = [k for k in REQUIRED_KEYS if k not in record]
        if missing:
            hint = " (a COCO captions file? convert it with datasets/prepare_coco_captions.py)" \
                if "captions" in missing and "annotations" in data else ""
            raise ValueError(f"{path}: image {index} lacks {missing}{hint}")
        if not isinstance(record["id"], int) or isinstance(record["id"], bool):
            raise ValueError(f"{path}: image {index} needs an integer 'id', got {record['id']!r}")
        if not isinstance(record["file_name"], str) or not record["file_name"]:
            raise ValueError(f"{path}: 'file_name' of image {record['id']} must be a path string")
        if not isinstance(record["captions"], list):
            raise ValueError(f"{path}: 'captions' of image {record['id']} must be a list")
        if record["id"] in seen:
            raise ValueError(f"{path}: image id {record['id']} appears twice")
        seen.add(record["id"])
    return data["images"]
