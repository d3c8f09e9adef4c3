"""Quality of pseudo boxes against ground truth.

A pseudo box is correct when its IoU with a ground-truth box of the same category in the same
image is >= ``iou_threshold``. Each ground-truth box counts for at most one pseudo box.

* precision: correct pseudo boxes / pseudo boxes;
* recall: ground-truth boxes found / ground-truth boxes (of the images evaluated);
* pair recall: (image, category) pairs of the ground truth that got a correct box / such pairs
  (one pseudo box per pair is what captions can give, so this is the recall they can reach).

Numbers are in percent, overall and per split ("base"/"novel" from the categories' ``split``).

Command line (prints the JSON; exit status 2 with an ``error:`` line on unreadable inputs)::

    python -m ovdet.evaluation.pseudo_boxes PSEUDO.json GROUND_TRUTH.json [--iou 0.5]

evaluates the images of the pseudo-box file that the ground truth has. The pseudo-box tools list
only images that got a box, so recall leaves out images that got none (their reports count them).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import torch
from torchvision.ops import box_iou

from ..utils.io import read_json_dataset


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def _percent(numerator: int, denominator: int) -> float | None:
    return round(100.0 * numerator / denominator, 2) if denominator else None


def pseudo_box_quality(pseudo: dict, ground_truth: dict, image_ids: list[int] | None = None,
                       iou_threshold: float = 0.5) -> dict:
    """``pseudo`` and ``ground_truth``: COCO instances dicts; ``image_ids``: the images evaluated
    (default: every ground-truth image). Returns ``{"all"|"base"|"novel": {"precision",
    "recall", "pair_recall", "pseudo_boxes", "gt_boxes"}}`` (module doc)."""
    ids = set(image_ids if image_ids is not None else (im["id"] for im in ground_truth["images"]))
    split = {c["id"]: c.get("split", "base") for c in ground_truth["categories"]}
    gt: dict[tuple[int, int], list[list[float]]] = defaultdict(list)
    for annotation in ground_truth["annotations"]:
        if annotation["image_id"] in ids and not annotation.get("iscrowd", 0):
            gt[annotation["image_id"], annotation["category_id"]].append(_xyxy(annotation["bbox"]))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    found: dict[tuple[int, int], set[int]] = defaultdict(set)
    for annotation in pseudo["annotations"]:
        key = (annotation["image_id"], annotation["category_id"])
        if key[0] not in ids:
            continue
        groups = ("all", split.get(key[1], "base"))
        for group in groups:
            counts[group]["pseudo_boxes"] += 1
        boxes = gt.get(key)
        if not boxes:
            continue
        iou = box_iou(torch.tensor([_xyxy(annotation["bbox"])]), torch.tensor(boxes))[0]
        free = [k for k in iou.argsort(descending=True).tolist()
                if iou[k] >= iou_threshold and k not in found[key]]
        if free:
            found[key].add(free[0])
            for group in groups:
                counts[group]["correct"] += 1
    for (image_id, category_id), boxes in gt.items():
        for group in ("all", split.get(category_id, "base")):
            counts[group]["gt_boxes"] += len(boxes)
            counts[group]["gt_pairs"] += 1
            counts[group]["found"] += len(found.get((image_id, category_id), ()))
            counts[group]["pairs_found"] += bool(found.get((image_id, category_id)))
    return {group: {"precision": _percent(c["correct"], c["pseudo_boxes"]),
                    "recall": _percent(c["found"], c["gt_boxes"]),
                    "pair_recall": _percent(c["pairs_found"], c["gt_pairs"]),
                    "pseudo_boxes": c["pseudo_boxes"], "gt_boxes": c["gt_boxes"]}
            for group, c in sorted(counts.items())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Pseudo-box precision and recall against "
                                                 "ground truth (COCO instances jsons).")
    parser.add_argument("pseudo", help="pseudo-box json (annotations with pseudo_score)")
    parser.add_argument("ground_truth", help="ground-truth COCO instances json")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU for a correct box")
    args = parser.parse_args(argv)
    try:
        if not 0 < args.iou <= 1:
            raise ValueError(f"--iou must be in (0, 1], got {args.iou}")
        fields = {"images": ("id",), "annotations": ("image_id", "category_id", "bbox"),
                  "categories": ("id",)}
        pseudo = read_json_dataset(args.pseudo, "a pseudo-box json", fields)
        ground_truth = read_json_dataset(args.ground_truth, "a COCO instances json", fields)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    known = {image["id"] for image in ground_truth["images"]}
    images = [image["id"] for image in pseudo["images"] if image["id"] in known]
    quality = pseudo_box_quality(pseudo, ground_truth, images, args.iou)
    print(json.dumps({"images": len(images), **quality}, indent=1))
    return quality


if __name__ == "__main__":
    main()
