#!/usr/bin/env python
"""Detect any vocabulary in images and draw the result.

    python tools/demo.py --config-file output/demo/config.yaml --input img1.png dir/ \\
        --vocabulary "tomato,egg,ice cube" --output out/ MODEL.WEIGHTS output/demo/model_final.pth

For each input image: OUTPUT/<name>.png (boxes, masks and labels drawn) and OUTPUT/<name>.json
(a list of {"bbox": [x1, y1, x2, y2], "score", "category"} in original pixel coordinates).
<name> is the file's stem; inputs that share a stem get their folders in the name
("x__a", "y__a"), and a name that is still taken gets a numeric suffix, so no result overwrites
another. Directories are expanded to their image files. ``--vocabulary`` takes comma-separated
names or the vocabulary files of ``tools/generate_pseudo_boxes.py`` (a COCO / LVIS json's
categories, or a text file with one name per line). ``--prompts FILE`` embeds the vocabulary
with learned region prompts (``tools/learn_region_prompts.py``; learned for the detector's CLIP)
instead of the detector's own embedding source.

A missing input or a file that cannot be read is named in one ``skipped:`` line and the others go
on; so is an image whose output would overwrite an input (an output folder that is an input
folder is refused outright). Exit status 1 with one ``error:`` line on bad arguments, on an output
that cannot be written (checked before the first image, and at each write), or when no image
could be processed.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ovdet.clip import WeightsNotFoundError
from ovdet.config import ConfigError, get_cfg
from ovdet.data.image_io import ImageReadError, read_image
from ovdet.engine.checkpoint import CheckpointError
from ovdet.predictor import OVPredictor
from ovdet.pseudo.captions import load_vocabulary
from ovdet.utils.io import atomic_write_json
from ovdet.utils.outputs import (OutputError, check_output_folder, expand_inputs,
                                 overwritten_input, prepare_output_folder, unclashing_outputs,
                                 write_file)
from ovdet.utils.visualize import draw_detections, save_png

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", required=True, help="image files and/or directories")
    parser.add_argument("--vocabulary", required=True,
                        help="comma-separated class names, or a vocabulary file (.json with "
                             "categories, or .txt with one name per line)")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--prompts", default=None, metavar="FILE",
                        help="learned region prompts file to embed the vocabulary with")
    parser.add_argument("--confidence", type=float, default=0.3, help="drawn/written score threshold")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. MODEL.WEIGHTS path")
    return parser.parse_args(argv)


def build_predictor(args: argparse.Namespace) -> OVPredictor:
    """The detector of ``--config-file`` and its overrides, with ``--vocabulary`` set."""
    vocabulary = load_vocabulary(args.vocabulary).names
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError("the demo needs a trained detector: add MODEL.WEIGHTS path/to/model.pth")
    if not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise FileNotFoundError(f"MODEL.WEIGHTS file not found: {cfg.MODEL.WEIGHTS}")
    if not cfg.MODEL.DETECTOR_ON:
        raise ConfigError("this model has no detector (MODEL.DETECTOR_ON False): for its panoptic "
                          "segmentation use tools/panoptic_infer.py")
    predictor = OVPredictor(cfg)
    predictor.set_vocabulary(vocabulary, prompts=args.prompts)
    return predictor


def write_result(predictor: OVPredictor, image, output: Path, name: str,
                 confidence: float) -> None:
    """Detect, then write ``name``.png (drawn) and ``name``.json into ``output``."""
    result = predictor([image])[0]
    keep = result["scores"] >= confidence
    labels = [label for label, k in zip(result["labels"], keep) if k]
    masks = result["masks"][keep] if result["masks"] is not None else None
    drawn = draw_detections(image, result["boxes"][keep], labels, result["scores"][keep], masks)
    detections = [{"bbox": [round(float(v), 2) for v in box], "score": round(float(score), 4),
                   "category": label}
                  for box, score, label in zip(result["boxes"][keep], result["scores"][keep],
                                               labels)]
    write_file(output / f"{name}.png", save_png, drawn)
    write_file(output / f"{name}.json", atomic_write_json, detections)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    output = Path(args.output)
    try:
        check_output_folder(output, args.input)
        paths, skipped = expand_inputs(args.input)
        predictor = build_predictor(args) if paths else None
        if paths:
            prepare_output_folder(output)
    except (ConfigError, WeightsNotFoundError, CheckpointError, ValueError,
            FileNotFoundError, OutputError) as error:
        sys.exit(f"error: {error}")
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)
    inputs = {p.resolve() for p in paths}
    written = 0
    for path, name in unclashing_outputs(paths, lambda n: overwritten_input(output, n, inputs)):
        try:
            image = read_image(path)
        except ImageReadError as error:
            print(f"skipped: {error}", file=sys.stderr)
            continue
        try:
            write_result(predictor, image, output, name, args.confidence)
        except OutputError as error:
            sys.exit(f"error: {error} ({written} of {len(paths)} images written)")
        written += 1
    total = len(paths) + len(skipped)
    print(f"wrote {written} of {total} images to {output}")
    if written == 0:
        sys.exit("error: no image could be processed")


if __name__ == "__main__":
    main()
