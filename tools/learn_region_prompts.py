#!/usr/bin/env python
"""Learn region prompts (PromptDet) for a detector config's CLIP, and measure them.

    python tools/learn_region_prompts.py --config-file configs/toyworld/promptdet_prompts.yaml \\
        --out output/demo_prompts/prompts.pt [--resume] [KEY VALUE ...]

Reads ``MODEL.CLIP`` (the CLIP), ``INPUT`` (image size), ``DATASETS.TRAIN`` (base boxes of its
box-labelled datasets, not those of ``DATASETS.IMAGE_LABELLED``: the positives, and random
background boxes), ``DATASETS.TEST[0]`` (validation boxes of base and novel
classes) and ``PROMPT_LEARNING`` (``ovdet/clip/config.py``). Steps (``ovdet.clip.prompt_learning``):

1. embed the training boxes and background boxes with RMA region tokens (one trunk pass per
   image), and the validation boxes; kept in ``OUT.parts/`` in shards of 1,024 images, each
   written when done (a killed run loses at most one shard), and reused by any later run whose
   CLIP, input size, datasets and region settings are the same (other prompt settings included);
2. train the context vectors (and a background embedding) with the text encoder frozen,
   checkpointing to ``OUT.parts/state.pt`` (kept, so a finished run resumes to itself);
3. write the prompts file ``OUT`` (``ovdet.clip.prompts`` documents it) and the report
   ``OUT``'s ``.report.json``: region classification accuracy of the validation boxes (base,
   novel, all; among all validation classes, the generalized setting) with the template ensemble,
   with the prompts before training, and after. The report is printed as JSON too.

An existing ``OUT`` or training state is never overwritten: ``--resume`` continues the run (same
settings; another run's state is refused), ``--overwrite`` starts training again.
Exit status 2 with one ``error:`` line on bad arguments, configs or inputs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pickle
import sys
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

import ovdet.data  # noqa: F401  (registers the built-in datasets)
from ovdet.clip.load import WeightsNotFoundError, load_clip
from ovdet.clip.prompt_learning import (PromptTrainer, PromptTrainingOptions, RegionSet,
                                        clip_logit_scale, extract_regions, region_accuracy)
from ovdet.clip.prompts import RegionPrompts
from ovdet.clip.text import DEFAULT_TEMPLATES, class_embeddings
from ovdet.clip.vit import CLIPViTTrunk
from ovdet.config import CfgNode, ConfigError, get_cfg
from ovdet.data.catalog import DatasetCatalog, DatasetError, UnknownDatasetError
from ovdet.data.loader import iterate_test_records
from ovdet.data.mapper import DatasetMapper
from ovdet.engine.trainer import training_vocabulary
from ovdet.modeling.vocabulary import prompt_name
from ovdet.pseudo.runner import parts_dir, report_path
from ovdet.utils.io import atomic_torch_save, atomic_write_json

logger = logging.getLogger("ovdet.learn_region_prompts")
STATE_VERSION = 1
SHARD_IMAGES = 1024  # images per stored shard of region embeddings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="YAML config")
    parser.add_argument("--out", required=True, help="the prompts file to write (.pt)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue an interrupted run")
    group.add_argument("--overwrite", action="store_true",
                       help="discard an earlier run's prompts file and state")
    parser.add_argument("--batch-size", type=int, default=16, help="images per trunk pass")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. PROMPT_LEARNING.MAX_ITER 200")
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> CfgNode:
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if not cfg.DATASETS.TEST:
        raise ConfigError("DATASETS.TEST is empty: name a validation dataset (its base and novel "
                          "boxes measure the prompts)")
    DatasetCatalog.check(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
    DatasetCatalog.check(cfg.DATASETS.TEST[:1], "DATASETS.TEST")
    options = cfg.PROMPT_LEARNING
    if options.BOX_SCALE < 1 or not 0 < options.BACKGROUND_MAX_OVERLAP <= 1:
        raise ConfigError("PROMPT_LEARNING.BOX_SCALE must be >= 1 and BACKGROUND_MAX_OVERLAP "
                          "in (0, 1]")
    for key in ("MAX_ITER", "BATCH_SIZE", "CHECKPOINT_PERIOD", "NUM_BEFORE", "NUM_AFTER",
                "BACKGROUND_PER_IMAGE", "MAX_IMAGES"):
        least = 1 if key in ("MAX_ITER", "BATCH_SIZE", "CHECKPOINT_PERIOD") else 0
        if options[key] < least:
            raise ConfigError(f"PROMPT_LEARNING.{key} must be at least {least}, got {options[key]}")
    if not options.BASE_LR > 0 or options.WEIGHT_DECAY < 0:
        raise ConfigError("PROMPT_LEARNING.BASE_LR must be positive and WEIGHT_DECAY non-negative")
    cfg.freeze()
    return cfg


def check_paths(args: argparse.Namespace, out: Path) -> None:
    """Refuse outputs that would overwrite inputs or another run's results."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a file path such as {out}/prompts.pt")
    if out.resolve() == Path(args.config_file).resolve():
        raise ValueError("--out is the config file; give another path")
    for path in (out, report_path(out)):
        if path.exists() and not (args.overwrite or args.resume):
            raise ValueError(f"{path} exists: --overwrite replaces it, --resume finishes its run")
    if report_path(out).resolve() == Path(args.config_file).resolve():
        raise ValueError(f"--out {out} would write its report over the config file; give "
                         "another path")
    state = parts_dir(out) / "state.pt"
    if state.exists() and not (args.overwrite or args.resume):
        raise ValueError(f"{state} holds the state of an earlier run: --resume continues it, "
                         "--overwrite starts again")
    if args.overwrite:
        state.unlink(missing_ok=True)  # the region caches are keyed by their settings: kept
    elif args.resume and out.exists() and not state.exists():
        raise ValueError(f"--resume: {out} exists but its run's state {state} is gone; "
                         "--overwrite learns it again")
    elif args.resume and state.exists():
        read_state(state)  # a damaged state is refused before any work


def read_state(path: Path) -> dict:
    """A training state written by this tool, or a ValueError when it is damaged."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError):
        state = None
    if not isinstance(state, dict) or "run" not in state:
        raise ValueError(f"{path} is damaged; --overwrite starts again")
    return state


def box_labelled_datasets(cfg: CfgNode) -> list[str]:
    """The datasets of DATASETS.TRAIN with human boxes (not in DATASETS.IMAGE_LABELLED)."""
    names = [n for n in cfg.DATASETS.TRAIN if n not in set(cfg.DATASETS.IMAGE_LABELLED)]
    if not names:
        raise ConfigError("DATASETS.TRAIN names no box-labelled dataset (every one is in "
                          "DATASETS.IMAGE_LABELLED): region prompts learn from base boxes")
    return names


def settings_key(cfg: CfgNode, clip_fingerprint: str, train_names: list[str],
                 val_names: list[str], batch_size: int) -> str:
    """What the region embeddings depend on (the batch size too: images of a batch are padded to
    the largest, and the trunk attends over the padding)."""
    options = cfg.PROMPT_LEARNING
    payload = {"clip": [cfg.MODEL.CLIP.NAME, cfg.MODEL.CLIP.PRETRAINED, clip_fingerprint,
                        cfg.MODEL.CLIP.KEEP_LAST_BLOCKS],
               "input": [cfg.INPUT.MIN_SIZE, cfg.INPUT.MAX_SIZE, batch_size],
               "train": box_labelled_datasets(cfg), "val": cfg.DATASETS.TEST[0],
               "train_names": train_names, "val_names": val_names,
               "regions": [options.BOX_SCALE, options.BACKGROUND_PER_IMAGE,
                           options.BACKGROUND_MAX_OVERLAP, options.MAX_IMAGES, cfg.SEED]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def embed_dataset(cfg: CfgNode, names: list[str], trunk: CLIPViTTrunk,
                  normalize: Callable[[torch.Tensor], torch.Tensor], device: str, batch_size: int,
                  background: bool, parts: Path, key: str, what: str) -> RegionSet:
    """The regions of the datasets ``names``, embedded in shards of :data:`SHARD_IMAGES` images,
    each stored as ``parts/<what>_NNNNN.pt`` (with ``key``) when done and reused by a rerun: a
    killed run loses at most the shard in progress."""
    records = [r for name in names for r in DatasetCatalog.get(name)]
    if background and cfg.PROMPT_LEARNING.MAX_IMAGES > 0:  # training images only
        records = records[:cfg.PROMPT_LEARNING.MAX_IMAGES]
    mapper = DatasetMapper(is_train=True, min_size=cfg.INPUT.MIN_SIZE, max_size=cfg.INPUT.MAX_SIZE,
                           flip=0.0, with_masks=False)
    options = cfg.PROMPT_LEARNING
    starts = range(0, len(records), SHARD_IMAGES)
    paths = [parts / f"{what}_{start // SHARD_IMAGES:05d}.pt" for start in starts]
    shards = [read_regions(path, key) for path in paths]
    done = sum(len(records[start:start + SHARD_IMAGES])
               for start, shard in zip(starts, shards) if shard is not None)
    with tqdm(total=len(records), initial=done, desc=f"embedding {what} boxes", unit="img",
              dynamic_ncols=True, disable=done == len(records)) as bar:
        for k, (start, path) in enumerate(zip(starts, paths)):
            if shards[k] is not None:
                continue
            shards[k] = extract_regions(
                trunk, normalize,
                iterate_test_records(records[start:start + SHARD_IMAGES], mapper, batch_size),
                box_scale=options.BOX_SCALE if background else 1.0,
                background_per_image=options.BACKGROUND_PER_IMAGE if background else 0,
                background_max_overlap=options.BACKGROUND_MAX_OVERLAP, seed=max(cfg.SEED, 0),
                first_index=start, progress=bar.update, device=device)
            atomic_torch_save(path, {"key": key, **shards[k].to_dict()})
    return RegionSet.concat(shards) if shards else RegionSet.empty(trunk.embed_dim)


def read_regions(path: Path, key: str) -> RegionSet | None:
    """The regions stored at ``path`` for ``key``; None when missing, damaged or another
    run's (then they are made again)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.get("key") == key:
            return RegionSet(data["embeddings"], data["labels"])
    except (RuntimeError, EOFError, OSError, KeyError, AttributeError, pickle.UnpicklingError):
        pass
    return None


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(args.out)
    try:
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
        cfg = load_config(args)
        check_paths(args, out)
        report = learn(cfg, out, args)
    except (ConfigError, ValueError, OSError, WeightsNotFoundError, UnknownDatasetError,
            DatasetError, FloatingPointError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(report, indent=1))
    return report


def learn(cfg: CfgNode, out: Path, args: argparse.Namespace) -> dict:
    device = args.device
    clip = load_clip(cfg.MODEL.CLIP.NAME, cfg.MODEL.CLIP.PRETRAINED or None, device=device)
    trunk = CLIPViTTrunk(clip.model.visual, cfg.MODEL.CLIP.KEEP_LAST_BLOCKS).eval()
    mean, std = clip.image_normalization()
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    normalize = lambda images: (images - mean_t) / std_t  # noqa: E731

    box_datasets = box_labelled_datasets(cfg)
    base_names = training_vocabulary(box_datasets)
    val_metadata = DatasetCatalog.metadata(cfg.DATASETS.TEST[0])
    val_names = list(val_metadata.thing_classes)
    novel = torch.tensor([s == "novel" for s in val_metadata.class_splits])
    descriptions: dict[str, str] = {}
    if cfg.PROMPT_LEARNING.USE_DESCRIPTIONS:
        for name in [*box_datasets, cfg.DATASETS.TEST[0]]:
            descriptions.update(DatasetCatalog.metadata(name).class_descriptions)
        if not descriptions:
            logger.info("the datasets' categories have no 'def' texts: prompts without "
                        "descriptions")
    options = PromptTrainingOptions(
        max_iter=cfg.PROMPT_LEARNING.MAX_ITER, batch_size=cfg.PROMPT_LEARNING.BATCH_SIZE,
        base_lr=cfg.PROMPT_LEARNING.BASE_LR, weight_decay=cfg.PROMPT_LEARNING.WEIGHT_DECAY,
        checkpoint_period=cfg.PROMPT_LEARNING.CHECKPOINT_PERIOD, seed=max(cfg.SEED, 0))
    torch.manual_seed(options.seed)
    prompts = RegionPrompts(clip, cfg.PROMPT_LEARNING.NUM_BEFORE, cfg.PROMPT_LEARNING.NUM_AFTER,
                            init=cfg.PROMPT_LEARNING.INIT, descriptions=descriptions).to(device)

    parts = parts_dir(out)
    parts.mkdir(parents=True, exist_ok=True)
    key = settings_key(cfg, clip.weights_fingerprint(), base_names, val_names, args.batch_size)
    train = embed_dataset(cfg, box_datasets, trunk, normalize, device, args.batch_size, True,
                          parts, key, "train")
    val = embed_dataset(cfg, [cfg.DATASETS.TEST[0]], trunk, normalize, device, args.batch_size,
                        False, parts, key, "val")
    logit_scale = clip_logit_scale(clip)
    templates = tuple(cfg.MODEL.OPEN_VOCAB.TEMPLATES) or DEFAULT_TEMPLATES

    def accuracy(embeddings: torch.Tensor) -> dict:
        return region_accuracy(val, embeddings.cpu(), logit_scale, novel)

    with torch.no_grad():
        template_accuracy = accuracy(class_embeddings(clip, [prompt_name(n) for n in val_names],
                                                      templates))
        initial_accuracy = accuracy(prompts(val_names))
    trainer = PromptTrainer(prompts, base_names, train, options, logit_scale)
    state_path = parts / "state.pt"
    # in its JSON form (lists, not tuples): as it is saved in, and read back from, the state
    run_key = json.loads(json.dumps({
        "regions": key, "options": options.__dict__, "init": cfg.PROMPT_LEARNING.INIT,
        "m": prompts.num_before, "n": prompts.num_after,
        "descriptions": sorted(descriptions.items()), "version": STATE_VERSION}))
    if state_path.is_file():
        state = read_state(state_path)
        if state["run"] != run_key:
            raise ValueError(f"{state_path} is the state of a run with other settings; "
                             "--overwrite starts again")
        if args.resume:
            try:
                trainer.load_state(state)
            except (KeyError, RuntimeError, ValueError) as error:
                raise ValueError(f"{state_path} cannot be resumed ({error}); --overwrite starts "
                                 "again") from None
            logger.info("resuming at step %d of %d", trainer.step, options.max_iter)

    def save_state(t: PromptTrainer) -> None:
        atomic_torch_save(state_path, {"run": run_key, **t.state()})

    trainer.train(save_state)
    with torch.no_grad():
        learned_accuracy = accuracy(prompts(val_names))
    report = {"clip": f"{cfg.MODEL.CLIP.NAME} {cfg.MODEL.CLIP.PRETRAINED}".strip(),
              "train_datasets": box_datasets, "val_dataset": cfg.DATASETS.TEST[0],
              "train_boxes": int((train.labels >= 0).sum()),
              "background_boxes": int((train.labels < 0).sum()),
              "base_classes": base_names,
              "novel_classes": [n for n, s in zip(val_names, novel.tolist()) if s],
              "context": [prompts.num_before, prompts.num_after],
              "descriptions": bool(descriptions), "steps": options.max_iter,
              "region_accuracy": {"templates": template_accuracy,
                                  "prompts_before": initial_accuracy,
                                  "prompts_after": learned_accuracy}}
    prompts.extra = {"report": json.dumps(report)}
    if trainer.with_background:
        prompts.extra["background"] = trainer.background.detach().cpu().clone()
    prompts.save(out)
    atomic_write_json(report_path(out), report)
    logger.info("wrote %s and %s", out, report_path(out))
    return report


if __name__ == "__main__":
    main()
