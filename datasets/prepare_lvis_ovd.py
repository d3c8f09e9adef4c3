"""Write LVIS v1's open-vocabulary annotation files (rare categories are novel).

    python datasets/prepare_lvis_ovd.py [--lvis-root DIR]

Reads, in DIR (default ``$OVDET_DATASETS/lvis``, ``OVDET_DATASETS`` defaults to ``./datasets``)::

    lvis_v1_train.json  ->  lvis_v1_train_ovd_base.json   common + frequent categories only
    lvis_v1_val.json    ->  lvis_v1_val_ovd.json          all 1203 categories

Every image is kept; categories carry ``"split": "base" | "novel"``; the base file also drops
rare ids from each image's ``neg_category_ids`` and ``not_exhaustive_category_ids``. A missing or
malformed input is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ovdet.data.ovd_splits import describe, make_lvis_ovd
from ovdet.utils.io import atomic_write_json

JOBS = (("lvis_v1_train.json", "lvis_v1_train_ovd_base.json", "base"),
        ("lvis_v1_val.json", "lvis_v1_val_ovd.json", "all"))


def main(argv: list[str] | None = None) -> int:
    default_root = os.path.join(os.environ.get("OVDET_DATASETS", "datasets"), "lvis")
    parser = argparse.ArgumentParser(description="Write LVIS's open-vocabulary annotation files.")
    parser.add_argument("--lvis-root", default=default_root,
                        help=f"folder holding lvis_v1_{{train,val}}.json (default {default_root})")
    args = parser.parse_args(argv)
    root = Path(args.lvis_root)
    missing = [str(root / src) for src, _, _ in JOBS if not (root / src).is_file()]
    if missing:
        print(f"error: {', '.join(missing)} not found; download the LVIS v1 annotations "
              f"(lvis_v1_train.json.zip, lvis_v1_val.json.zip) from https://www.lvisdataset.org "
              f"and unzip them in {root}", file=sys.stderr)
        return 2
    for src, dst, keep in JOBS:
        try:
            with open(root / src, encoding="utf-8") as f:
                split = make_lvis_ovd(json.load(f), keep)
        except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
            print(f"error: {root / src}: {e}", file=sys.stderr)
            return 2
        atomic_write_json(root / dst, split)
        print(f"wrote {root / dst}: {describe(split)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
