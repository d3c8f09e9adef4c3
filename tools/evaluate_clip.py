#!/usr/bin/env python
"""Measure what a CLIP knows of the toy world and print the numbers (JSON, then a copypaste line).

    python tools/evaluate_clip.py --clip toyworld --dataset-root datasets/toyworld --split val

Probes (fresh held-out scenes, seeds never used in training): single-object zero-shot accuracy and
value-trick dense patch accuracy. With ``--dataset-root``: crop-and-classify accuracy of every
ground-truth box of ``annotations/instances_SPLIT.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ovdet.clip import WeightsNotFoundError, load_clip
from ovdet.evaluation.clip_probe import (box_crop_accuracy, dense_patch_accuracy,
                                         zero_shot_accuracy)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", default="toyworld", help="CLIP name (default: the toy CLIP)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or checkpoint path")
    parser.add_argument("--dataset-root", default=None, help="a toy world written by ovdet.data.toyworld")
    parser.add_argument("--split", default="val")
    parser.add_argument("--num-images", type=int, default=600, help="zero-shot probe images")
    parser.add_argument("--num-dense-images", type=int, default=300, help="dense probe images")
    args = parser.parse_args(argv)
    try:
        clip = load_clip(args.clip, args.pretrained)
    except (WeightsNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    start = time.perf_counter()
    results = {"clip": args.clip,
               "zero_shot": zero_shot_accuracy(clip, args.num_images),
               "dense_patch": dense_patch_accuracy(clip, args.num_dense_images)}
    if args.dataset_root:
        root = Path(args.dataset_root)
        instances = root / "annotations" / f"instances_{args.split}.json"
        if not instances.is_file():
            sys.exit(f"error: {instances} not found; generate it with "
                     f"python -m ovdet.data.toyworld --out {root} --split {args.split}")
        results[f"box_crops_{args.split}"] = box_crop_accuracy(clip, instances, root / args.split)
    results["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(results, indent=1))
    line = [f"zero_shot={results['zero_shot']['overall']:.3f}",
            f"zero_shot_novel={results['zero_shot']['novel']:.3f}",
            f"dense={results['dense_patch']['overall']:.3f}",
            f"dense_min_category={results['dense_patch']['min_category']:.3f}"]
    if args.dataset_root:
        crops = results[f"box_crops_{args.split}"]
        line += [f"box_crop={crops['overall']:.3f}", f"box_crop_novel={crops['novel']:.3f}"]
    print("copypaste: " + " ".join(line))


if __name__ == "__main__":
    main()
