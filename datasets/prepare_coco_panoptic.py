"""Write COCO 2017's open-vocabulary panoptic files (OVR-CNN split: 48 base, 17 novel things).

    python datasets/prepare_coco_panoptic.py [--coco-root DIR] [--others base|drop]
    python datasets/prepare_coco_panoptic.py --input FILE --keep base|all [--output FILE]

The first form reads, under ``DIR/annotations/`` (DIR defaults to ``$OVDET_DATASETS/coco``,
``OVDET_DATASETS`` to ``./datasets``)::

    panoptic_train2017.json  ->  panoptic_train2017_ovd_base.json   63 base things + 53 stuff
    panoptic_val2017.json    ->  panoptic_val2017_ovd.json          63 base + 17 novel + 53 stuff

The second converts one file; its output defaults to the input's name with ``_ovd_base.json``
(keep base) or ``_ovd.json`` (keep all).

Thing categories carry ``"split": "base" | "novel"``: the 17 novel ones of the 48/17 split are
novel, the others base. A base-only file has no novel things: their segments are removed from
``segments_info``, so their pixels are void for training. The PNGs
(``coco/panoptic_{train,val}2017/``) are read by the datasets as they are and never
rewritten. COCO's 15 thing categories outside the split are kept as base things (``--others
base``, default: the evaluation file keeps every segment) or removed from both files as the
instance files remove them (``--others drop``: 48 base things, but PQ does not treat their
unlisted pixels as VOID).
Every image is kept. A missing or malformed input is one line on stderr and exit status 2; an
output that would overwrite an input is refused. Outputs are written atomically.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ovdet.data.panoptic import describe_panoptic, make_coco_panoptic_ovd
from ovdet.utils.io import atomic_write_json, read_json

JOBS = (("panoptic_train2017.json", "panoptic_train2017_ovd_base.json", "base"),
        ("panoptic_val2017.json", "panoptic_val2017_ovd.json", "all"))


def default_output(source: Path, keep: str) -> Path:
    """``NAME.json`` -> ``NAME_ovd_base.json`` (keep base) or ``NAME_ovd.json`` (keep all)."""
    return source.with_name(source.stem + ("_ovd_base.json" if keep == "base" else "_ovd.json"))


def convert(jobs: list[tuple[Path, Path, str]], others: str, hint: str) -> int:
    """Each ``(source, destination, keep)``: read, convert, write atomically, print counts.
    Returns 0, or 2 after one line on stderr; nothing is written when an input is missing or
    an output would overwrite an input."""
    missing = [str(src) for src, _, _ in jobs if not src.is_file()]
    if missing:
        print(f"error: {', '.join(missing)} not found; {hint}", file=sys.stderr)
        return 2
    sources = {src.resolve() for src, _, _ in jobs}
    clobbered = [str(dst) for _, dst, _ in jobs if dst.resolve() in sources]
    if clobbered:
        print(f"error: refusing to overwrite the input {', '.join(clobbered)}; name another "
              "output", file=sys.stderr)
        return 2
    for src, dst, keep in jobs:
        try:
            converted, removed = make_coco_panoptic_ovd(read_json(src), keep, others)
        except (OSError, ValueError) as error:
            print(f"error: {src}: {error}", file=sys.stderr)
            return 2
        atomic_write_json(dst, converted)
        print(f"wrote {dst}: {describe_panoptic(converted)}; {removed} removed segments "
              "(unlisted in the PNGs)")
    return 0


def main(argv: list[str] | None = None) -> int:
    default_root = os.path.join(os.environ.get("OVDET_DATASETS", "datasets"), "coco")
    parser = argparse.ArgumentParser(
        description="Write COCO's open-vocabulary panoptic annotation files.")
    parser.add_argument("--coco-root", default=default_root,
                        help=f"COCO root holding annotations/ (default {default_root})")
    parser.add_argument("--input", type=Path,
                        help="convert this one panoptic json instead of the two under --coco-root")
    parser.add_argument("--keep", choices=("base", "all"),
                        help="with --input: base (training) or all (evaluation)")
    parser.add_argument("--output", type=Path,
                        help="with --input: the file to write (default: the input's name with "
                             "_ovd_base.json or _ovd.json)")
    parser.add_argument("--others", choices=("base", "drop"), default="base",
                        help="COCO's 15 thing categories outside the 48/17 split: kept as base "
                             "things (default) or removed from both files")
    args = parser.parse_args(argv)
    if args.input is None:
        if args.keep or args.output:
            parser.error("--keep and --output go with --input")
        folder = Path(args.coco_root) / "annotations"
        jobs = [(folder / src, folder / dst, keep) for src, dst, keep in JOBS]
        hint = ("download the 2017 Panoptic Train/Val annotations "
                "(panoptic_annotations_trainval2017.zip) from https://cocodataset.org and unzip "
                f"them, and the PNG zips inside them, in {args.coco_root}")
    else:
        if args.keep is None:
            parser.error("--input needs --keep base|all")
        jobs = [(args.input, args.output or default_output(args.input, args.keep), args.keep)]
        hint = "pass a COCO panoptic json (panoptic_{train,val}2017.json)"
    return convert(jobs, args.others, hint)


if __name__ == "__main__":
    sys.exit(main())
