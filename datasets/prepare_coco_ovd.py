"""Write COCO 2017's open-vocabulary annotation files (OVR-CNN split: 48 base, 17 novel).

    python datasets/prepare_coco_ovd.py [--coco-root DIR]

Reads, under ``DIR/annotations/`` (DIR defaults to ``$OVDET_DATASETS/coco``, ``OVDET_DATASETS``
to ``./datasets``)::

    instances_train2017.json  ->  instances_train2017_ovd_base.json   48 base categories
    instances_val2017.json    ->  instances_val2017_ovd.json          48 base + 17 novel

Every image is kept; categories carry ``"split": "base" | "novel"``. A missing or malformed input
is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ovdet.data.ovd_splits import describe, make_coco_ovd
from ovdet.utils.io import atomic_write_json

JOBS = (("instances_train2017.json", "instances_train2017_ovd_base.json", "base"),
        ("instances_val2017.json", "instances_val2017_ovd.json", "all"))


def main(argv: list[str] | None = None) -> int:
    default_root = os.path.join(os.environ.get("OVDET_DATASETS", "datasets"), "coco")
    parser = argparse.ArgumentParser(description="Write COCO's open-vocabulary annotation files.")
    parser.add_argument("--coco-root", default=default_root,
                        help=f"COCO root holding annotations/ (default {default_root})")
    args = parser.parse_args(argv)
    annotations = Path(args.coco_root) / "annotations"
    missing = [str(annotations / src) for src, _, _ in JOBS if not (annotations / src).is_file()]
    if missing:
        print(f"error: {', '.join(missing)} not found; download the 2017 Train/Val annotations "
              f"(annotations_trainval2017.zip) from https://cocodataset.org and unzip them in "
              f"{args.coco_root}", file=sys.stderr)
        return 2
    for src, dst, keep in JOBS:
        try:
            with open(annotations / src, encoding="utf-8") as f:
                split = make_coco_ovd(json.load(f), keep)
        except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            print(f"error: {annotations / src}: {e}", file=sys.stderr)
            return 2
        atomic_write_json(annotations / dst, split)
        print(f"wrote {annotations / dst}: {describe(split)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
