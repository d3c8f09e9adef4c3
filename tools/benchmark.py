#!/usr/bin/env python
"""Benchmarks that print JSON. Methods are run side by side in one process, so ratios between
them are meaningful on a noisy machine.

    python tools/benchmark.py pseudo-boxes [--dataset-root datasets/toyworld] [--split val]
        [--num-images 500] [--methods dense,gradcam,softmax_gradcam,dense-value,...]

``pseudo-boxes``: every method generates pseudo boxes for the split's captions (box-free
candidates, the tool's defaults, the toy world's stuff names as background) and is scored against
the split's ground truth (:mod:`ovdet.evaluation.pseudo_boxes`). Besides the three methods:
Grad-CAM at the states entering the first block (``*-first-block``), and ablations of ``dense``:
``dense-value`` (value-trick patch embeddings instead of window region tokens), ``dense-region``
and ``dense-combined`` (the RMA region scorer alone or combined), ``dense-no-background`` (no
stuff names). Printed per method: precision, recall, pair recall (percent) and images per second.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from ovdet.clip.load import load_clip
from ovdet.data.toyworld.categories import STUFF_CATEGORIES
from ovdet.evaluation.pseudo_boxes import pseudo_box_quality
from ovdet.pseudo.captions import group_coco_captions
from ovdet.pseudo.generator import PseudoBoxGenerator, PseudoBoxOptions
from ovdet.pseudo.maps import METHODS
from ovdet.pseudo.runner import generate_pseudo_boxes
from ovdet.pseudo.vocabulary import NounVocabulary


VARIANTS = {**{method: {"method": method} for method in METHODS},
            "gradcam-first-block": {"method": "gradcam", "gradcam_block": 0},
            "softmax_gradcam-first-block": {"method": "softmax_gradcam", "gradcam_block": 0},
            "dense-value": {"method": "dense", "source": "value"},
            "dense-region": {"method": "dense", "scorer": "region"},
            "dense-combined": {"method": "dense", "scorer": "combined"},
            "dense-no-background": {"method": "dense", "background": False}}


def pseudo_boxes(args: argparse.Namespace) -> dict:
    root = Path(args.dataset_root)
    annotations = root / "annotations"
    with open(annotations / f"instances_{args.split}.json") as f:
        ground_truth = json.load(f)
    with open(annotations / f"captions_{args.split}.json") as f:
        records, _ = group_coco_captions(json.load(f))
    records = records[:args.num_images]
    vocabulary = NounVocabulary(ground_truth["categories"])
    clip = load_clip(args.clip)
    background = [c.name for c in STUFF_CATEGORIES]
    results = {"images": len(records), "torch_threads": torch.get_num_threads(), "methods": {}}
    for method in args.methods.split(","):
        if method not in VARIANTS:
            raise SystemExit(f"error: unknown method {method!r}; choose from {list(VARIANTS)}")
        settings = dict(VARIANTS[method])
        names = background if settings.pop("background", True) else []
        generator = PseudoBoxGenerator(clip, vocabulary, PseudoBoxOptions(**settings), names)
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "pseudo.json"
            started = time.perf_counter()
            generate_pseudo_boxes(generator, records, root / args.split, out,
                                  {"method": method}, ground_truth["categories"],
                                  batch_size=args.batch_size, show_progress=False)
            seconds = time.perf_counter() - started
            with open(out) as f:
                quality = pseudo_box_quality(json.load(f), ground_truth,
                                             [r["id"] for r in records])
        results["methods"][method] = {**quality["all"], "novel": quality.get("novel"),
                                      "images_per_second": round(len(records) / seconds, 1)}
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pseudo = commands.add_parser("pseudo-boxes", help="pseudo-box precision/recall/speed")
    pseudo.add_argument("--dataset-root", default="datasets/toyworld")
    pseudo.add_argument("--split", default="val")
    pseudo.add_argument("--num-images", type=int, default=500)
    pseudo.add_argument("--methods", default=",".join(VARIANTS))
    pseudo.add_argument("--batch-size", type=int, default=32)
    pseudo.add_argument("--clip", default="toyworld")
    args = parser.parse_args(argv)
    try:
        print(json.dumps(pseudo_boxes(args), indent=2))
    except FileNotFoundError as error:
        sys.exit(f"error: {error} (make the toy world first: make toyworld)")


if __name__ == "__main__":
    main()
