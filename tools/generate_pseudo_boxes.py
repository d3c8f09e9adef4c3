#!/usr/bin/env python
"""Pseudo boxes from image captions with the shared CLIP (PB-OVD), as a COCO instances json.

    python tools/generate_pseudo_boxes.py --captions captions.json --image-root DIR \\
        --vocabulary categories.json --method dense --out pseudo.json

``--captions``: a COCO captions file (``captions_train2017.json``) or ovdet's caption file
(``datasets/prepare_coco_captions.py`` makes it); the form is told by its keys. ``--vocabulary``:
a vocabulary file (a COCO json's ``categories`` are read, with their ``synonyms``; or a text file,
one ``name[, synonym, ...]`` per line) or a comma-separated list of names. ``--background``: names
that compete in the softmax but never get boxes (stuff): ``auto`` (default) takes the toy world's
stuff names for a toy-world vocabulary and COCO panoptic's 53 stuff names otherwise
(:func:`ovdet.pseudo.generator.default_background`), ``none`` uses none, anything else is a
comma-separated list.
``--proposals``: a detector checkpoint whose RPN gives the candidate boxes (its config is read from
``--proposals-config``, default ``config.yaml`` next to the checkpoint); without it candidates are
box-free. Sharded and resumable: rerun the same command after an interruption. Writes OUT, OUT's
report (``.report.json``) and the shards (``OUT.parts/``). Exit status 2 on bad arguments or input.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from ovdet.clip.load import WeightsNotFoundError, load_clip
from ovdet.pseudo.captions import load_vocabulary, read_caption_records
from ovdet.pseudo.generator import PseudoBoxGenerator, PseudoBoxOptions, default_background
from ovdet.pseudo.maps import DENSE_SOURCES, METHODS
from ovdet.pseudo.runner import file_signature, generate_pseudo_boxes, summary
from ovdet.pseudo.scoring import SCORERS
from ovdet.pseudo.vocabulary import NounVocabulary


def thresholds(text: str) -> tuple[float, ...]:
    """``--thresholds`` "0.4,0.5" -> (0.4, 0.5)."""
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--thresholds takes comma-separated numbers, e.g. 0.4,0.7; got {text!r}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = PseudoBoxOptions()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", required=True,
                        help="COCO captions json (captions_train2017.json) or ovdet caption file")
    parser.add_argument("--image-root", required=True, help="folder the file_names are under")
    parser.add_argument("--vocabulary", required=True,
                        help="vocabulary file (.json or .txt) or comma-separated names")
    parser.add_argument("--background", default="auto",
                        help="background names (stuff), never boxed: 'auto' (toy-world stuff for "
                             "a toy-world vocabulary, COCO stuff otherwise), 'none', or "
                             "comma-separated names")
    parser.add_argument("--method", choices=METHODS, default=defaults.method)
    parser.add_argument("--dense-source", choices=DENSE_SOURCES, default=defaults.source,
                        help="dense maps from window region tokens or value-trick patches")
    parser.add_argument("--window", type=int, default=defaults.window,
                        help="window side, in patches (odd)")
    parser.add_argument("--gradcam-block", type=int, default=defaults.gradcam_block,
                        help="Grad-CAM at the states entering this block (negative: from the end)")
    parser.add_argument("--input-size", type=int, default=defaults.input_size,
                        help="longer image side fed to CLIP, in pixels")
    parser.add_argument("--zero-below", type=float, default=defaults.zero_below,
                        help="normalised activations under this are zeroed")
    parser.add_argument("--thresholds", type=thresholds, default=defaults.thresholds,
                        help="levels of the box-free candidate regions")
    parser.add_argument("--scorer", choices=SCORERS, default=defaults.scorer)
    parser.add_argument("--region-weight", type=float, default=defaults.region_weight,
                        help="weight of the region score in the combined scorer")
    parser.add_argument("--proposals", default="", help="detector checkpoint for candidates")
    parser.add_argument("--proposals-config", default="",
                        help="its config (default: config.yaml next to the checkpoint)")
    parser.add_argument("--clip", default="toyworld", help="open_clip model name")
    parser.add_argument("--clip-pretrained", default="", help="open_clip tag or local file")
    parser.add_argument("--out", required=True, help="output COCO json")
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--overwrite", action="store_true", help="discard shards of another run")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def background_names(spec: str, vocabulary: NounVocabulary) -> list[str]:
    """``--background``: "auto" (:func:`default_background`), "none", or comma-separated names."""
    if spec.strip().lower() == "auto":
        return default_background(vocabulary)
    if spec.strip().lower() == "none":
        return []
    return [n.strip() for n in spec.split(",") if n.strip()]


def proposal_source(checkpoint: str, config_file: str, device: str):
    """Candidates from a detector's RPN: a callable images -> per image (P, 4) boxes."""
    from ovdet.config import get_cfg
    from ovdet.predictor import OVPredictor

    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"proposal checkpoint not found: {checkpoint}")
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = device
    predictor = OVPredictor(cfg, checkpoint)
    return lambda images: [torch.from_numpy(p["boxes"]) for p in predictor.propose(images)]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        records = read_caption_records(args.captions)
        vocabulary = load_vocabulary(args.vocabulary)
        options = PseudoBoxOptions(
            method=args.method, source=args.dense_source, window=args.window,
            gradcam_block=args.gradcam_block, input_size=args.input_size,
            zero_below=args.zero_below,
            thresholds=args.thresholds,
            scorer=args.scorer, region_weight=args.region_weight)
        background = background_names(args.background, vocabulary)
        logging.info("background names (--background %s): %s", args.background,
                     ", ".join(background) or "none")
        clip = load_clip(args.clip, args.clip_pretrained or None, device=args.device)
        proposals_config = args.proposals_config or (
            str(Path(args.proposals).with_name("config.yaml")) if args.proposals else "")
        proposals = proposal_source(args.proposals, proposals_config, args.device) \
            if args.proposals else None
        generator = PseudoBoxGenerator(clip, vocabulary, options, background, proposals,
                                       args.device)
        settings = {"clip": args.clip, "clip_weights": clip.weights_fingerprint(),
                    "vocabulary": [[c.id, c.name, list(c.phrases)]
                                   for c in vocabulary.categories],
                    "background": background, "options": options.to_dict(),
                    "proposals": file_signature(args.proposals) if args.proposals else None,
                    "proposals_config": file_signature(proposals_config)
                    if proposals_config else None}
        report = generate_pseudo_boxes(generator, records, args.image_root, args.out, settings,
                                       vocabulary.coco_categories(), args.shard_size,
                                       args.batch_size, args.overwrite)
    except (ValueError, OSError, WeightsNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(summary(report, args.out))
    return report


if __name__ == "__main__":
    main()
