"""Turn a COCO captions file into the caption file of ``tools/generate_pseudo_boxes.py``.

    python datasets/prepare_coco_captions.py [--input FILE] [--output FILE]

Defaults: ``$OVDET_DATASETS/coco/annotations/captions_train2017.json`` (``OVDET_DATASETS``
defaults to ``./datasets``) -> ``captions_train2017_ovdet.json`` next to it. Each image gets all
of its captions (five in COCO); images without a caption are left out and counted. The toy
world's ``captions_SPLIT.json`` files have the same schema. A missing or malformed input is one
line on stderr and exit status 2; the output is written atomically.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ovdet.pseudo.captions import group_coco_captions
from ovdet.utils.io import atomic_write_json, read_json_dataset


def main(argv: list[str] | None = None) -> int:
    default_input = Path(os.environ.get("OVDET_DATASETS", "datasets"), "coco", "annotations",
                         "captions_train2017.json")
    parser = argparse.ArgumentParser(description="COCO captions -> ovdet caption file.")
    parser.add_argument("--input", default=str(default_input),
                        help=f"COCO captions json (default {default_input})")
    parser.add_argument("--output", default="",
                        help="caption file to write (default: INPUT with suffix _ovdet.json)")
    args = parser.parse_args(argv)
    source = Path(args.input)
    output = Path(args.output) if args.output else source.with_name(source.stem + "_ovdet.json")
    if not source.is_file():
        print(f"error: {source} not found; download the 2017 Train/Val annotations "
              "(annotations_trainval2017.zip) from https://cocodataset.org", file=sys.stderr)
        return 2
    try:
        data = read_json_dataset(source, "COCO captions", {"images": (), "annotations": ()})
        records, without = group_coco_captions(data)
    except (OSError, ValueError) as error:
        print(f"error: {source}: {error}", file=sys.stderr)
        return 2
    atomic_write_json(output, {"images": records})
    captions = sum(len(r["captions"]) for r in records)
    print(f"wrote {output}: {len(records)} images, {captions} captions; "
          f"{len(without)} images without a caption left out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
