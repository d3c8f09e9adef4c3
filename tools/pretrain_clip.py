#!/usr/bin/env python
"""Pretrain a tiny open_clip CLIP on toy-world image-caption pairs (no boxes), then measure it.

    python tools/pretrain_clip.py --output-dir output/toyclip --export ovdet/clip/weights/toyworld.pt

Checkpoints go to ``OUTPUT_DIR/checkpoint.pt`` every ``--checkpoint-period`` steps (atomic);
``--resume`` continues from there with the same data order, so a killed run loses at most one
period. At the end the weights are exported in half precision (``--export``) and the zero-shot and
dense-patch probes (``ovdet.evaluation.clip_probe``) are written to ``OUTPUT_DIR/metrics.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import open_clip
import torch
from fvcore.common.param_scheduler import (CompositeParamScheduler, CosineParamScheduler,
                                           LinearParamScheduler)
from tqdm import tqdm

from ovdet.clip.load import CLIPBundle, TOYWORLD_ARCH
from ovdet.clip.pretrain import ToyCLIPObjective, normalize_images, render_pair_pool
from ovdet.evaluation.clip_probe import dense_patch_accuracy, zero_shot_accuracy
from ovdet.utils.io import atomic_torch_save, atomic_write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=TOYWORLD_ARCH, help="open_clip architecture name")
    parser.add_argument("--output-dir", default="output/toyclip")
    parser.add_argument("--export", default=None, help="where to write the final fp16 weights")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=40, help="linear warmup steps")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--patch-weight", type=float, default=1.0,
                        help="weight of the patch-alignment (PACL-style) loss; 0 disables it")
    parser.add_argument("--num-pairs", type=int, default=40000, help="image-caption pairs rendered")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the training scenes")
    parser.add_argument("--checkpoint-period", type=int, default=50)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint.pt")
    parser.add_argument("--probe-images", type=int, default=600,
                        help="held-out images of the zero-shot probe (half as many for the dense one)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)
    for name in ("steps", "batch_size", "num_pairs", "checkpoint_period", "probe_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def lr_multiplier(args: argparse.Namespace) -> CompositeParamScheduler:
    warmup = min(args.warmup, args.steps - 1) / args.steps
    return CompositeParamScheduler(
        [LinearParamScheduler(0.01, 1.0), CosineParamScheduler(1.0, 0.01)],
        interval_scaling=["rescaled", "rescaled"], lengths=[warmup, 1 - warmup])


def export_half(model: torch.nn.Module, path: str | Path, meta: dict) -> None:
    """Write ``{"state_dict": fp16 tensors, "ovdet_meta": meta}``, loadable by open_clip."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    atomic_torch_save(path, {"state_dict": state, "ovdet_meta": meta})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model, _, preprocess = open_clip.create_model_and_transforms(args.model)
    tokenizer = open_clip.get_tokenizer(args.model)
    objective = ToyCLIPObjective(model, tokenizer, args.patch_weight)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embedding" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    schedule = lr_multiplier(args)
    checkpoint_path = output_dir / "checkpoint.pt"
    start_step, elapsed_before = 0, 0.0
    if args.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, elapsed_before = state["step"], state["elapsed"]
        print(f"resumed from {checkpoint_path} at step {start_step}")

    native = model.visual.image_size[0]
    pool = render_pair_pool(args.seed, args.num_pairs, native)
    model.train()
    started = time.perf_counter()
    bar = tqdm(range(start_step, args.steps), initial=start_step, total=args.steps,
               desc="pretraining toy CLIP", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = args.lr * schedule(step / args.steps)
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        index = torch.randint(len(pool.captions), (args.batch_size,), generator=generator)
        losses = objective(normalize_images(pool.images[index]), [pool.captions[i] for i in index])
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; "
                                     f"last good checkpoint: {checkpoint_path}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        if (step + 1) % args.checkpoint_period == 0 or step + 1 == args.steps:
            elapsed = elapsed_before + time.perf_counter() - started
            atomic_torch_save(checkpoint_path, {"model": model.state_dict(),
                                                "optimizer": optimizer.state_dict(),
                                                "step": step + 1, "elapsed": elapsed})
    train_seconds = elapsed_before + time.perf_counter() - started
    model.eval()
    bundle = CLIPBundle(model=model, tokenizer=tokenizer, preprocess=preprocess, name=args.model,
                        pretrained=None)
    metrics = {"zero_shot": zero_shot_accuracy(bundle, args.probe_images),
               "dense_patch": dense_patch_accuracy(bundle, max(1, args.probe_images // 2)),
               "train_seconds": round(train_seconds, 1), "args": vars(args),
               "machine": f"{platform.processor() or platform.machine()}, "
                          f"{torch.get_num_threads()} threads, torch {torch.__version__}"}
    atomic_write_json(output_dir / "metrics.json", metrics)
    if args.export:
        export_half(model, args.export, {"arch": args.model, "metrics": metrics})
    print(json.dumps({k: metrics[k] for k in ("zero_shot", "dense_patch", "train_seconds")}, indent=1))


if __name__ == "__main__":
    main()
