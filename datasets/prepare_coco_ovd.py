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
import os
import sys
from pathlib import Path

from ovdet.data.ovd_splits import make_coco_ovd, write_ovd_files

JOBS = (("instances_train2017.json", "instances_train2017_ovd_base.json", "base"),
        ("instances_val2017.json", "instances_val2017_ovd.json", "all"))


def main(argv: list[str] | None = None) -> int:
    default_root = os.path.join(os.environ.get("OVDET_DATASETS", "datasets"), "coco")
    parser = argparse.ArgumentParser(description="Write COCO's open-vocabulary annotation files.")
    parser.add_argument("--coco-root", default=default_root,
                        help=f"COCO root holding annotations/ (default {default_root})")
    args = parser.parse_args(argv)
    hint = (f"download the 2017 Train/Val annotations (annotations_trainval2017.zip) from "
            f"https://cocodataset.org and unzip them in {args.coco_root}")
    return write_ovd_files(Path(args.coco_root) / "annotations", JOBS, make_coco_ovd, hint)


if __name__ == "__main__":
    sys.exit(main())
