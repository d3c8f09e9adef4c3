#!/usr/bin/env python
"""Average the weights of detector runs (a "model soup"; WiSE-FT when one of them is the
pretrained detector).

    python tools/average_weights.py \\
        --weights output/demo_pseudo/pbovd_keep_soft/model_final.pth \\
                  output/demo_pseudo/pbovd_finetune/model_final.pth \\
        --ratios 0.7 0.3 --out output/soup/model_final.pth \\
        --config-file configs/toyworld/pbovd_keep.yaml
    python tools/train_net.py --config-file output/soup/config.yaml --eval-only

``--weights``: two or more checkpoints of one architecture, trained on the same base classes and,
for the average to mean anything, fine-tuned from the same starting checkpoint.
``--ratios``: one per checkpoint, finite and >= 0, scaled to sum to 1 (default: equal).
``--out``: the averaged checkpoint (:mod:`ovdet.engine.averaging`), written atomically, with
``averaging.json`` beside it (the checkpoints, their ratios and the config). ``--config-file``
(with ``KEY VALUE`` overrides after the options): also write ``config.yaml`` beside OUT, that
config with ``MODEL.WEIGHTS`` = OUT and ``OUTPUT_DIR`` = OUT's folder, so that
``train_net.py --config-file <folder>/config.yaml --eval-only`` evaluates the average; the config
should be the one the main checkpoint was trained with (its scoring is what evaluation uses).

Never overwrites an input, nor a file this tool did not write: an existing OUT or config.yaml
is replaced only when OUT's folder holds an ``averaging.json`` naming OUT (and, for config.yaml,
a config file), and an existing OUT only with ``--overwrite`` (a run killed before it wrote OUT
just runs again); an average without ``--config-file`` removes the config.yaml of the earlier
one, which would load the new weights under the old config. A training run's folder (one with
``last_checkpoint``) is refused. Options come before the ``KEY VALUE`` overrides. Bad inputs end
in one ``error:`` line and exit status 1 (argparse's usage errors, e.g. a ratio that is not a
number: status 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ovdet.config import get_cfg
from ovdet.engine.averaging import average_checkpoints, normalised_ratios
from ovdet.engine.trainer import write_config
from ovdet.utils.io import atomic_torch_save, atomic_write_json

RECORD, CONFIG = "averaging.json", "config.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="+", required=True, metavar="PTH",
                        help="two or more checkpoints to average")
    parser.add_argument("--ratios", nargs="+", type=float, metavar="R",
                        help="one per checkpoint, >= 0, scaled to sum to 1 (default: equal)")
    parser.add_argument("--out", required=True, help="the averaged checkpoint (.pth)")
    parser.add_argument("--config-file", metavar="FILE",
                        help="also write config.yaml beside OUT: this config, loading OUT")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT and its config.yaml when this tool wrote them")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides (with --config-file), after the options")
    return parser.parse_args(argv)


def check_outputs(args: argparse.Namespace) -> dict | None:
    """ValueError when OUT, its config.yaml or its record would overwrite an input, a file this
    tool did not write, or an earlier average without ``--overwrite`` (a run killed before OUT
    was written needs none). Returns the record of that earlier average, None if there is none."""
    out = Path(args.out)
    folder = out.parent
    if out.name in (RECORD, CONFIG):
        raise ValueError(f"--out {out} is the name of a file written beside it; name the "
                         "checkpoint e.g. model_final.pth")
    inputs = {Path(p).resolve(): p for p in input_files(args)}
    outputs = [out, folder / RECORD] + ([folder / CONFIG] if args.config_file else [])
    for output in outputs:
        if output.resolve() in inputs:
            raise ValueError(f"{output} would overwrite the input {inputs[output.resolve()]}; "
                             "choose another --out")
        if output.is_dir():
            raise ValueError(f"{output} is a folder; --out names a file, e.g. DIR/model_final.pth")
    if (folder / "last_checkpoint").exists():
        raise ValueError(f"{folder} is a training run's folder; write the average elsewhere")
    existing = [p for p in outputs if p.exists()]
    if not existing:
        return None
    record = read_record(folder / RECORD)
    if record is None or record.get("out") != out.name:
        earlier = f" (it holds an average of {record['out']})" if record else ""
        raise ValueError(f"{', '.join(map(str, existing))}: not written by this tool for --out "
                         f"{out.name}{earlier}; choose another --out")
    if folder / CONFIG in existing and not record.get("config_file"):
        raise ValueError(f"{folder / CONFIG} was not written by this tool (its earlier average "
                         "had no --config-file); choose another --out")
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} is an earlier average; give --overwrite to replace it")
    return record


def check_inputs(args: argparse.Namespace) -> None:
    """ValueError when a checkpoint is named twice (paths compared resolved)."""
    seen: dict[Path, str] = {}
    for path in args.weights:
        if Path(path).resolve() in seen:
            raise ValueError(f"--weights names one file twice ({seen[Path(path).resolve()]} and "
                             f"{path}); to weigh it more, use --ratios")
        seen[Path(path).resolve()] = path


def input_files(args: argparse.Namespace) -> list[str]:
    """The checkpoints and, when given, the config file."""
    return [*args.weights, *([args.config_file] if args.config_file else [])]


def read_record(path: Path) -> dict | None:
    """The record (``averaging.json``) at ``path``; None if there is none or it cannot be read."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        ratios = args.ratios if args.ratios is not None else [1.0] * len(args.weights)
        if len(ratios) != len(args.weights):
            raise ValueError(f"{len(args.weights)} --weights but {len(ratios)} --ratios: give "
                             "one ratio per checkpoint")
        ratios = normalised_ratios(ratios)
        if args.opts and not args.config_file:
            raise ValueError(f"config overrides {args.opts} need --config-file")
        missing = [p for p in input_files(args) if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"not found: {', '.join(missing)}")
        check_inputs(args)
        earlier = check_outputs(args)
        cfg = None
        if args.config_file:
            cfg = get_cfg()
            cfg.merge_from_file(args.config_file)
            cfg.merge_from_list(args.opts)
        averaged = average_checkpoints(args.weights, ratios)
        out = Path(args.out)
        record = {"out": out.name,
                  "checkpoints": [{"path": str(p), "ratio": r}
                                  for p, r in zip(args.weights, ratios)],
                  "config_file": args.config_file, "overrides": args.opts}
        stale_config = out.parent / CONFIG  # the earlier average's, when this one has none
        if cfg is None and earlier and earlier.get("config_file") and stale_config.exists():
            stale_config.unlink()
        atomic_write_json(out.parent / RECORD, record)  # first: it marks the folder as ours
        atomic_torch_save(out, averaged)
        if cfg is not None:
            cfg.MODEL.WEIGHTS = str(out)
            cfg.OUTPUT_DIR = str(out.parent)
            write_config(cfg, out.parent / CONFIG)
    except (ValueError, OSError) as error:  # CheckpointError and ConfigError are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"wrote {out} = " + " + ".join(f"{r:.3g} x {p}" for p, r in zip(args.weights, ratios)),
          file=sys.stderr)
    return record


if __name__ == "__main__":
    main()
