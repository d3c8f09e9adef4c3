#!/usr/bin/env python
"""Panoptic segmentation of images with any things and stuff, written in COCO panoptic format.

    python tools/panoptic_infer.py --config-file output/panoptic/config.yaml \\
        --input img1.png dir/ --things "tomato,egg,ice cube" --stuff "table,wall" --output out/ \\
        MODEL.WEIGHTS output/panoptic/model_final.pth

The config must be a panoptic model's (trained with ``MODEL.PANOPTIC_ON True``). For each input
image: OUTPUT/panoptic/<name>.png (COCO panoptic PNG: segment id = R + 256 G + 256² B, 0 = void)
and OUTPUT/<name>.png (the image with each segment filled translucently, outlined and labelled).
One OUTPUT/panoptic.json in COCO panoptic format describes them all::

    {"annotations": [{"image_id": "<name>", "file_name": "<name>.png",
                      "segments_info": [{"id", "category_id", "isthing", "score", "area",
                                         "bbox": [x, y, w, h]}]}],
     "categories": [{"id", "name", "isthing": 1 | 0}],
     "images": [{"id": "<name>", "file_name": "<input path>", "height", "width"}]}

with category ids 1..C, the ``--things`` then the ``--stuff`` in the order given. The json is
rewritten (atomically) at least every 10 seconds while images are processed and at the end, so an
interrupted run keeps the annotations of nearly every PNG it wrote. A run into a folder that already
holds a ``panoptic.json`` of the same things and stuff adds to it: the earlier run's entries whose
PNGs are still there are kept (an image processed again is replaced), so an interrupted run is
resumed by running again on the images left; a ``panoptic.json`` of another vocabulary, or not
of this tool, is never replaced (an error asks for another folder). <name> is the input's stem,
made unique as ``tools/demo.py`` does ("x__a", "y__a", "a-2").

``--things`` (required) and ``--stuff`` (optional: things only) take comma-separated names or the
vocabulary files of ``tools/generate_pseudo_boxes.py`` (a COCO / LVIS json's categories, or a text
file with one name per line), like demo's ``--vocabulary``; a name may not be both. Images are
processed ``--batch-size`` at a time (default 8) under a progress bar with ETA (on a terminal).

A missing input or a file that cannot be read is named in one ``skipped:`` line and the others go
on; so is an image whose outputs would overwrite an input (an output folder that is an input
folder is refused outright). Exit status 1 with one ``error:`` line on bad arguments (no names, a
name both thing and stuff, missing weights, a config without the panoptic branch), on an output
that cannot be written, or when no image could be processed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ovdet.clip import WeightsNotFoundError
from ovdet.config import ConfigError, get_cfg
from ovdet.data.image_io import ImageReadError, read_image
from ovdet.data.toyworld.writer import encode_segment_ids
from ovdet.engine.checkpoint import CheckpointError
from ovdet.modeling.vocabulary import normalize_class_name
from ovdet.predictor import OVPredictor
from ovdet.pseudo.captions import load_vocabulary
from ovdet.utils.io import atomic_write_json, read_json
from ovdet.utils.outputs import (OutputError, check_output_folder, expand_inputs,
                                 overwritten_input, prepare_output_folder, unclashing_outputs,
                                 write_file)
from ovdet.utils.visualize import draw_panoptic, save_png

JSON_NAME = "panoptic.json"
PNG_FOLDER = "panoptic"
JSON_EVERY_S = 10.0  # rewrite panoptic.json at most this often while images are processed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE",
                        help="a panoptic model's config (MODEL.PANOPTIC_ON True)")
    parser.add_argument("--input", nargs="+", required=True, help="image files and/or directories")
    parser.add_argument("--things", required=True,
                        help="thing class names, comma-separated, or a vocabulary file (.json with "
                             "categories, or .txt with one name per line)")
    parser.add_argument("--stuff", default=None,
                        help="stuff class names or a vocabulary file, as --things (default: none)")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. MODEL.WEIGHTS path")
    return parser.parse_args(argv)


def load_names(spec: str, flag: str) -> list[str]:
    """The names of a ``--things`` / ``--stuff`` argument; errors name the flag."""
    try:
        return load_vocabulary(spec).names
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"{flag}: {error}") from None


def vocabularies(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """``(things, stuff)`` of the arguments; ValueError for no names or a name in both."""
    things = load_names(args.things, "--things")
    stuff = load_names(args.stuff, "--stuff") if args.stuff is not None else []
    stuff_keys = {normalize_class_name(n) for n in stuff}
    both = [n for n in things if normalize_class_name(n) in stuff_keys]
    if both:
        raise ValueError(f"{', '.join(repr(n) for n in both)} given both in --things and in "
                         "--stuff; a class is either a thing or stuff")
    return things, stuff


def build_predictor(args: argparse.Namespace, things: list[str], stuff: list[str]
                    ) -> OVPredictor:
    """The panoptic model of ``--config-file`` and its overrides, with the vocabularies set."""
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if not cfg.MODEL.get("PANOPTIC_ON", False):
        raise ConfigError(f"{args.config_file} is not a panoptic model's config (MODEL.PANOPTIC_ON "
                          "is off): use the config.yaml of a model trained with MODEL.PANOPTIC_ON "
                          "True (tools/demo.py draws a detector's boxes)")
    if not cfg.MODEL.WEIGHTS:
        raise ConfigError("panoptic inference needs a trained model: add MODEL.WEIGHTS "
                          "path/to/model.pth")
    if not Path(cfg.MODEL.WEIGHTS).is_file():
        raise FileNotFoundError(f"MODEL.WEIGHTS file not found: {cfg.MODEL.WEIGHTS}")
    predictor = OVPredictor(cfg, batch_size=args.batch_size)
    predictor.set_vocabulary(things, stuff=stuff)
    return predictor


def categories(things: list[str], stuff: list[str]) -> list[dict]:
    """COCO panoptic categories: ids 1..C, things then stuff."""
    return [{"id": index + 1, "name": name, "isthing": int(index < len(things))}
            for index, name in enumerate(things + stuff)]


def segments_info(ids: np.ndarray, segments: list[dict]) -> tuple[np.ndarray, list[dict]]:
    """The ids to write (pixels of ids no segment names set to void) and the COCO
    ``segments_info`` of the segments that have pixels (``category_id`` + 1; ``area`` in pixels,
    ``bbox`` [x, y, w, h])."""
    ids = ids.astype(np.int64)
    known = np.asarray([s["id"] for s in segments], np.int64)
    ids = np.where(np.isin(ids, known), ids, 0)
    info = []
    for segment in segments:
        mask = ids == segment["id"]
        area = int(mask.sum())
        if area == 0:
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        info.append({"id": int(segment["id"]), "category_id": int(segment["category_id"]) + 1,
                     "isthing": bool(segment["isthing"]),
                     "score": round(float(segment["score"]), 4), "area": area,
                     "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                              int(rows[-1] - rows[0] + 1)]})
    return ids, info


def write_image_result(image: np.ndarray, path: Path, result: dict, output: Path,
                       name: str) -> tuple[dict, dict]:
    """Write ``name``'s panoptic PNG and overlay; returns its json annotation and image record."""
    ids, segments = result["panoptic_seg"]
    ids, info = segments_info(ids, segments)
    drawn = draw_panoptic(image, ids, segments)
    write_file(output / PNG_FOLDER / f"{name}.png", save_png, encode_segment_ids(ids))
    write_file(output / f"{name}.png", save_png, drawn)
    annotation = {"image_id": name, "file_name": f"{name}.png", "segments_info": info}
    record = {"id": name, "file_name": str(path), "height": int(image.shape[0]),
              "width": int(image.shape[1])}
    return annotation, record


def write_json(output: Path, annotations: list[dict], images: list[dict],
               category_list: list[dict]) -> None:
    write_file(output / JSON_NAME, atomic_write_json,
                    {"annotations": annotations, "categories": category_list, "images": images})


def earlier_results(output: Path, category_list: list[dict]) -> tuple[list[dict], list[dict]]:
    """The annotations and image records of an earlier run into ``output`` (its
    ``panoptic.json``) whose PNGs are still there, so that this run adds to them; ([], []) when
    there is none. A ``panoptic.json`` this run could not extend (another vocabulary, not this
    tool's) is a ValueError: it is never replaced."""
    path = output / JSON_NAME
    if not path.exists():
        return [], []
    hint = f"choose another --output (or move {path} away)"
    try:
        data = read_json(path, "earlier panoptic.json")
    except ValueError as error:
        raise ValueError(f"{error}; {hint}") from None
    if not (isinstance(data, dict)
            and all(isinstance(data.get(k), list) for k in ("annotations", "images"))):
        raise ValueError(f"{path} is not a panoptic.json of this tool; {hint}")
    if data.get("categories") != category_list:
        raise ValueError(f"{path} holds results for another vocabulary (its categories differ "
                         f"from --things/--stuff); {hint}")
    kept = {a["file_name"] for a in data["annotations"]
            if isinstance(a, dict) and (output / PNG_FOLDER / str(a.get("file_name"))).is_file()}
    annotations = [a for a in data["annotations"] if a.get("file_name") in kept]
    images = [r for r in data["images"]
              if isinstance(r, dict) and f"{r.get('id')}.png" in kept]
    return annotations, images


def check_outputs(output: Path, entries: list[str]) -> None:
    """demo's output-folder rules for OUTPUT and OUTPUT/panoptic."""
    check_output_folder(output, entries)
    check_output_folder(output / PNG_FOLDER, entries)


def clash(output: Path, name: str, inputs: set[Path]) -> Path | None:
    """The input that ``name``'s outputs would overwrite, if any."""
    return (overwritten_input(output, name, inputs)
            or overwritten_input(output / PNG_FOLDER, name, inputs))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    output = Path(args.output)
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        things, stuff = vocabularies(args)
        check_outputs(output, args.input)
        paths, skipped = expand_inputs(args.input)
        inputs = {p.resolve() for p in paths}
        if (output / JSON_NAME).resolve() in inputs:
            raise ValueError(f"--output {output} would overwrite the input "
                             f"{output / JSON_NAME}; choose another folder")
        category_list = categories(things, stuff)
        earlier, earlier_images = earlier_results(output, category_list) if paths else ([], [])
        predictor = build_predictor(args, things, stuff) if paths else None
        if paths:
            prepare_output_folder(output)
            prepare_output_folder(output / PNG_FOLDER)
    except (ConfigError, WeightsNotFoundError, CheckpointError, ValueError,
            FileNotFoundError, OutputError) as error:
        sys.exit(f"error: {error}")
    for message in skipped:
        print(f"skipped: {message}", file=sys.stderr)

    jobs = unclashing_outputs(paths, lambda name: clash(output, name, inputs))
    redone = {f"{name}.png" for _, name in jobs}  # an earlier run's results for these are replaced
    annotations = [a for a in earlier if a["file_name"] not in redone]
    records = [r for r in earlier_images if f"{r['id']}.png" not in redone]
    written = 0
    json_written = time.monotonic()
    bar = tqdm(total=len(jobs), unit="img", desc="panoptic", disable=None, dynamic_ncols=True)
    try:
        for start in range(0, len(jobs), args.batch_size):
            batch = []
            for path, name in jobs[start:start + args.batch_size]:
                try:
                    batch.append((path, name, read_image(path)))
                except ImageReadError as error:
                    tqdm.write(f"skipped: {error}", file=sys.stderr)
            results = predictor([image for _, _, image in batch]) if batch else []
            for (path, name, image), result in zip(batch, results):
                annotation, record = write_image_result(image, path, result, output, name)
                annotations.append(annotation)
                records.append(record)
                written += 1
            bar.update(len(jobs[start:start + args.batch_size]))
            if time.monotonic() - json_written >= JSON_EVERY_S:
                write_json(output, annotations, records, category_list)
                json_written = time.monotonic()
    except OutputError as error:
        bar.close()
        sys.exit(f"error: {error} ({written} of {len(paths)} images written)")
    except KeyboardInterrupt:
        bar.close()
        if written:
            write_json(output, annotations, records, category_list)
            print(f"interrupted: {output / JSON_NAME} describes the {len(annotations)} images "
                  "written", file=sys.stderr)
        raise
    bar.close()
    if written:
        try:
            write_json(output, annotations, records, category_list)
        except OutputError as error:
            sys.exit(f"error: {error}")
    total = len(paths) + len(skipped)
    kept = len(annotations) - written
    print(f"wrote {written} of {total} images to {output}"
          + (f" ({output / JSON_NAME} also keeps {kept} of an earlier run)" if kept else ""))
    if not written:
        sys.exit("error: no image could be processed")


if __name__ == "__main__":
    main()
