"""Caption pseudo boxes as the unlabelled objects of human-labelled images.

A human base-box dataset labels its base categories only; the other objects of its images (novel
ones) are unlabelled, and a detector fine-tuned on it learns them as background. Pseudo boxes made
from the same images' captions (``tools/generate_pseudo_boxes.py``; ``DATASETS.PSEUDO_BOXES``) say
where those objects are. :func:`attach_pseudo_boxes` gives every record of a human-labelled dataset
the pseudo boxes of its image, by image id, as::

    record["pseudo_annotations"] = [{"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS,
                                     "category_id": int, "pseudo_score": float}, ...]

keeping only pseudo boxes of categories the image has no human box of (a human box is the truth
about its category; a pseudo box of the same category is a duplicate or a mistake). The mapper
turns them into ``instances["pseudo_boxes" | "pseudo_classes" | "pseudo_scores"]``; the RPN and the
RoI heads decide what to do with them (``MODEL.RPN.UNLABELLED``, ``MODEL.ROI_HEADS.UNLABELLED``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .catalog import DatasetError

DEFAULT_PSEUDO_SCORE = 1.0  # of a pseudo annotation without "pseudo_score"


def attach_pseudo_boxes(records: list[dict], name: str, human_ids: Sequence[int],
                        pseudo_sets: Sequence[tuple[str, list[dict], Sequence[int]]]
                        ) -> list[dict]:
    """Copies of ``records`` (never changed) with ``"pseudo_annotations"`` (module doc).

    Args:
        records: dataset dicts of the human-labelled dataset ``name``, ``category_id`` in its own
            classes.
        human_ids: its contiguous category id -> the training vocabulary's index (the union of
            the training classes).
        pseudo_sets: ``(name, dataset dicts, category ids -> vocabulary index)`` of each
            pseudo-box dataset of (some of) the same images.

    Returns the copies, ``category_id`` of the human annotations mapped by ``human_ids`` and of
    the pseudo annotations by their dataset's ids. A :class:`DatasetError` when an image id of
    both names different image files in them (paths compared resolved), when a pseudo-box
    dataset shares no image with ``records`` (the wrong file), or for a ``pseudo_score`` outside
    [0, 1].
    """
    lookups = [(pseudo_name, {r["image_id"]: r for r in pseudo_records}, ids)
               for pseudo_name, pseudo_records, ids in pseudo_sets]
    shared = {pseudo_name: 0 for pseudo_name, _, _ in lookups}
    attached = []
    for record in records:
        humans = [{**a, "category_id": human_ids[a["category_id"]]}
                  for a in record.get("annotations", [])]
        labelled = {a["category_id"] for a in humans if not a.get("iscrowd", 0)}
        unlabelled = []
        for pseudo_name, by_id, ids in lookups:
            pseudo = by_id.get(record["image_id"])
            if pseudo is None:
                continue
            shared[pseudo_name] += 1
            if pseudo["file_name"] != record["file_name"] and \
                    Path(pseudo["file_name"]).resolve() != Path(record["file_name"]).resolve():
                raise DatasetError(
                    f"image id {record['image_id']} is {record['file_name']} in {name!r} but "
                    f"{pseudo['file_name']} in the pseudo boxes {pseudo_name!r}: they must be "
                    "pseudo boxes of the same images (the same ids, registered with the same "
                    "image root)")
            for annotation in pseudo.get("annotations", []):
                category = ids[annotation["category_id"]]
                if annotation.get("iscrowd", 0) or category in labelled:
                    continue
                score = float(annotation.get("pseudo_score", DEFAULT_PSEUDO_SCORE))
                if not 0 <= score <= 1:
                    raise DatasetError(f"a pseudo box of image {record['image_id']} in "
                                       f"{pseudo_name!r} has pseudo_score {score}; scores are "
                                       "in [0, 1] (they weigh soft positives)")
                unlabelled.append({"bbox": list(annotation["bbox"]),
                                   "bbox_mode": annotation["bbox_mode"], "category_id": category,
                                   "pseudo_score": score})
        attached.append({**record, "annotations": humans, "pseudo_annotations": unlabelled})
    unshared = [pseudo_name for pseudo_name, count in shared.items() if records and not count]
    if unshared:
        raise DatasetError(f"the pseudo boxes {unshared} share no image id with {name!r}; "
                           "DATASETS.PSEUDO_BOXES must be pseudo boxes of the images of the "
                           "box-labelled training datasets")
    return attached
