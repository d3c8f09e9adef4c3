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
import os
import sys
from pathlib import Path

from ovdet.data.ovd_splits import make_lvis_ovd, write_ovd_files

JOBS = (("lvis_v1_train.json", "lvis_v1_train_ovd_base.json", "base"),
        ("lvis_v1_val.json", "lvis_v1_val_ovd.json", "all"))


def main(argv: list[str] | None = None) -> int:
    default_root = os.path.join(os.environ.get("OVDET_DATASETS", "datasets"), "lvis")
    parser = argparse.ArgumentParser(description="Write LVIS's open-vocabulary annotation files.")
    parser.add_argument("--lvis-root", default=default_root,
                        help=f"folder holding lvis_v1_{{train,val}}.json (default {default_root})")
    args = parser.parse_args(argv)
    hint = (f"download the LVIS v1 annotations (lvis_v1_train.json.zip, lvis_v1_val.json.zip) "
            f"from https://www.lvisdataset.org and unzip them in {args.lvis_root}")
    return write_ovd_files(Path(args.lvis_root), JOBS, make_lvis_ovd, hint)


if __name__ == "__main__":
    sys.exit(main())
