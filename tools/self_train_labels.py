#!/usr/bin/env python
"""Pseudo boxes for image-labelled images from a trained detector (PromptDet's self-training).

    python tools/self_train_labels.py --config-file output/base/config.yaml \\
        --tags imagenet_lvis_image_info.json --image-root datasets/imagenet --out round1.json
    python tools/self_train_labels.py --config-file output/base/config.yaml \\
        --weights output/base/model_0049999.pth --captions captions_train2017.json \\
        --image-root datasets/coco/train2017 --vocabulary categories.json --out round1.json

For each image and each category it is labelled with, the detector's top-scoring candidate box
for that category (the configured scorer's final scores, before threshold and NMS;
:meth:`OpenVocabRCNN.score_proposals`) becomes the image's box for it, with that score
(:mod:`ovdet.pseudo.self_training`).

Inputs. ``--config-file``: the detector's config (its ``config.yaml``), with ``KEY VALUE``
overrides after the options; ``--weights``: its checkpoint (default ``MODEL.WEIGHTS``), which must
fit the config. Labels, one of: ``--captions``, a COCO captions file or ovdet's caption file
(:mod:`ovdet.pseudo.captions`): the vocabulary names its nouns name are an image's categories;
``--tags``, a COCO-style json whose images list ``"pos_category_ids"`` (Detic's convention for
image-labelled data; :mod:`ovdet.pseudo.self_training`). ``--vocabulary``: a vocabulary file (a
COCO / LVIS json's ``categories``, or a text file with one ``name[, synonym, ...]`` per line) or
comma-separated names; required with ``--captions``, default the tag file's ``categories`` with
``--tags`` (a given vocabulary must use the tag file's ids). The detector's vocabulary is set to
its names.

Output: OUT, a COCO instances json (images with at least one box, one annotation per box with
``pseudo_score``, the vocabulary's categories; ``register_coco_instances`` reads it), and OUT's
report (``OUT`` with suffix ``.report.json``: counts, images/s, one problem per image or category
without a box). Sharded and resumable: the shards are in ``OUT.parts/``, and rerunning the same
command continues; another detector, weights file, config, vocabulary or input is refused
unless ``--overwrite``. An output that would overwrite an input is refused. Exit status 2 with
one ``error:`` line on bad arguments or inputs.

Why offline, in rounds, rather than inside training: the meta-architecture's ``forward`` stays
as it is (self-training is a new dataset of pseudo boxes, not an edit of the detector); the
pseudo boxes can be inspected and scored (pseudo-box precision against ground truth, e.g.
``python -m ovdet.evaluation.pseudo_boxes``) before a round of training trusts them; a long pass over a big
image-labelled set is resumable; and it is what PromptDet does: one pass of the current detector
over the image-labelled set, the top-1 box per labelled category, then training on them together
with the box-labelled data.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from ovdet.clip import WeightsNotFoundError
from ovdet.config import CfgNode, get_cfg
from ovdet.predictor import OVPredictor
from ovdet.pseudo.captions import load_vocabulary, looks_like_path, read_caption_records
from ovdet.pseudo.runner import (file_signature, generate_pseudo_boxes, parts_dir, report_path,
                                 summary)
from ovdet.pseudo.self_training import (TAGS, DetectorLabeller, check_tag_vocabulary,
                                        read_tag_records)
from ovdet.pseudo.vocabulary import NounVocabulary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE",
                        help="the detector's config (its config.yaml)")
    parser.add_argument("--weights", default="",
                        help="the detector's checkpoint (default: MODEL.WEIGHTS of the config)")
    labels = parser.add_mutually_exclusive_group(required=True)
    labels.add_argument("--captions", help="COCO captions json or ovdet caption file")
    labels.add_argument("--tags", help="COCO-style json whose images carry pos_category_ids")
    parser.add_argument("--image-root", required=True, help="folder the file_names are under")
    parser.add_argument("--vocabulary", default="",
                        help="vocabulary file (.json or .txt) or comma-separated names "
                             "(default with --tags: the tag file's categories)")
    parser.add_argument("--out", required=True, help="output COCO json")
    parser.add_argument("--overwrite", action="store_true", help="discard shards of another run")
    parser.add_argument("--batch-size", type=int, default=8, help="images per detector pass")
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--device", default="",
                        help="default: cuda when there is one, else cpu")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, after the options")
    return parser.parse_args(argv)


def read_inputs(args: argparse.Namespace) -> tuple[list[dict], NounVocabulary]:
    """The records of ``--captions`` or ``--tags`` and the vocabulary (module doc)."""
    if args.captions:
        if not args.vocabulary:
            raise ValueError("--captions needs --vocabulary (the categories whose names the "
                             "captions' nouns are matched to)")
        return read_caption_records(args.captions), load_vocabulary(args.vocabulary)
    records, categories = read_tag_records(args.tags)
    if args.vocabulary:
        vocabulary = load_vocabulary(args.vocabulary)
    elif categories:
        vocabulary = NounVocabulary(categories)
    else:
        raise ValueError(f"{args.tags} has no categories: give --vocabulary")
    check_tag_vocabulary(vocabulary, records, categories, args.tags)
    return records, vocabulary


def load_config(args: argparse.Namespace) -> CfgNode:
    """``--config-file`` with the overrides, ``MODEL.WEIGHTS`` from ``--weights`` and
    ``MODEL.DEVICE`` from ``--device``."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.weights:
        cfg.MODEL.WEIGHTS = args.weights
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("no weights: give --weights path/to/model.pth (or MODEL.WEIGHTS)")
    if not Path(cfg.MODEL.WEIGHTS).is_file():
        raise FileNotFoundError(f"weights file not found: {cfg.MODEL.WEIGHTS}")
    if not cfg.MODEL.DETECTOR_ON:
        raise ValueError("this model has no detector (MODEL.DETECTOR_ON False): nothing to "
                         "score boxes with")
    cfg.MODEL.DEVICE = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return cfg


def check_out(args: argparse.Namespace, cfg: CfgNode) -> None:
    """ValueError when OUT or its report would overwrite an input file."""
    inputs = [args.captions or args.tags, args.config_file, cfg.MODEL.WEIGHTS]
    if args.vocabulary and looks_like_path(args.vocabulary):
        inputs.append(args.vocabulary)
    inputs = {Path(p).resolve(): p for p in inputs}
    for output in (Path(args.out), report_path(args.out)):
        if output.resolve() in inputs:
            raise ValueError(f"--out {args.out} would overwrite the input "
                             f"{inputs[output.resolve()]}; choose another output path")
    for path, name in inputs.items():
        if parts_dir(args.out).resolve() in path.parents:
            raise ValueError(f"--out {args.out}: its shard folder {parts_dir(args.out)} holds "
                             f"the input {name}; choose another output path")


def run_settings(cfg: CfgNode, vocabulary: NounVocabulary, labels: str) -> dict:
    """What decides the boxes, for the run's fingerprint and the output's ``info``: the config
    (device aside), the weights file's signature, the vocabulary and the kind of labels."""
    config = cfg.clone()
    config.MODEL.DEVICE = ""
    return {"method": "self-training (top-scoring detector box per labelled category)",
            "config": config.dump(), "weights": file_signature(cfg.MODEL.WEIGHTS),
            "vocabulary": [[c.id, c.name, list(c.phrases)] for c in vocabulary.categories],
            "labels": labels}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    labels = "captions" if args.captions else TAGS
    try:
        if args.batch_size < 1 or args.shard_size < 1:
            raise ValueError("--batch-size and --shard-size must be at least 1")
        cfg = load_config(args)
        check_out(args, cfg)
        records, vocabulary = read_inputs(args)
        if not Path(args.image_root).is_dir():
            raise ValueError(f"--image-root {args.image_root} is not a directory")
        predictor = OVPredictor(cfg, batch_size=args.batch_size)
        labeller = DetectorLabeller(predictor, vocabulary, labels)
        report = generate_pseudo_boxes(labeller, records, args.image_root, args.out,
                                       run_settings(cfg, vocabulary, labels),
                                       vocabulary.coco_categories(), args.shard_size,
                                       args.batch_size, args.overwrite, labels=labels)
    except (ValueError, OSError, WeightsNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(summary(report, args.out, "self-training boxes"))
    return report


if __name__ == "__main__":
    main()
