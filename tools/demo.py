#!/usr/bin/env python
"""Detect any vocabulary in images and draw the result.

    python tools/demo.py --config-file output/demo/config.yaml --input img1.png dir/ \\
        --vocabulary "tomato,egg,ice cube" --output out/ MODEL.WEIGHTS output/demo/model_final.pth

For each input image: OUTPUT/<stem>.png (boxes, masks and labels drawn) and OUTPUT/<stem>.json
(a list of {"bbox": [x1, y1, x2, y2], "score", "category"} in original pixel coordinates).
Directories are expanded to their image files. A file that cannot be read is named in one line
and skipped; the others go on.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ovdet.clip import WeightsNotFoundError
from ovdet.config import ConfigError, get_cfg
from ovdet.data.image_io import ImageReadError, image_files, read_image
from ovdet.predictor import OVPredictor
from ovdet.utils.io import atomic_write_json
from ovdet.utils.visualize import draw_detections, save_png


def parse_vocabulary(text: str) -> list[str]:
    """``"a,b,c"`` or a path to a file with one name per line -> names (order kept, no blanks)."""
    path = Path(text)
    raw = path.read_text().splitlines() if path.is_file() else text.split(",")
    names = [n.strip() for n in raw if n.strip()]
    if not names:
        raise ValueError(f"empty vocabulary: {text!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"vocabulary names repeat: {duplicates}")
    return names


def unique_stems(paths: list[Path]) -> list[str]:
    """Output names: the file stem, with a numeric suffix where two inputs share a stem."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count}")
    return stems


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", required=True, help="image files and/or directories")
    parser.add_argument("--vocabulary", required=True,
                        help='comma-separated class names, or a file with one name per line')
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--confidence", type=float, default=0.3, help="drawn/written score threshold")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. MODEL.WEIGHTS path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        vocabulary = parse_vocabulary(args.vocabulary)
        paths = image_files(args.input)
        cfg = get_cfg()
        cfg.merge_from_file(args.config_file)
        cfg.merge_from_list(args.opts)
        predictor = OVPredictor(cfg)
        predictor.set_vocabulary(vocabulary)
    except (ConfigError, WeightsNotFoundError, ImageReadError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    written = 0
    for path, stem in zip(paths, unique_stems(paths)):
        try:
            image = read_image(path)
        except ImageReadError as error:
            print(f"skipped: {error}", file=sys.stderr)
            continue
        result = predictor([image])[0]
        keep = result["scores"] >= args.confidence
        labels = [label for label, k in zip(result["labels"], keep) if k]
        masks = result["masks"][keep] if result["masks"] is not None else None
        drawn = draw_detections(image, result["boxes"][keep], labels, result["scores"][keep], masks)
        save_png(output / f"{stem}.png", drawn)
        atomic_write_json(output / f"{stem}.json", [
            {"bbox": [round(float(v), 2) for v in box], "score": round(float(score), 4),
             "category": label}
            for box, score, label in zip(result["boxes"][keep], result["scores"][keep], labels)])
        written += 1
    print(f"wrote {written} of {len(paths)} images to {output}")


if __name__ == "__main__":
    main()
