#!/usr/bin/env python
"""Train and evaluate an open-vocabulary detector (detectron2's command line).

    python tools/train_net.py --config-file configs/toyworld/ovrcnn_base.yaml
    python tools/train_net.py --config-file configs/toyworld/ovrcnn_base.yaml --resume
    python tools/train_net.py --config-file output/demo/config.yaml --eval-only \\
        MODEL.WEIGHTS output/demo/model_final.pth DATASETS.TEST '("toyworld_val",)' OUTPUT_DIR out
    python tools/train_net.py --config-file X.yaml --num-gpus 8     # relaunches through torchrun

Training uses the base classes of DATASETS.TRAIN only; evaluation uses every class of each
DATASETS.TEST dataset (generalized setting) and writes OUTPUT_DIR/eval_metrics.json.
"""
from __future__ import annotations

import logging
import os
import sys

import torch

import ovdet.data  # noqa: F401  (registers the built-in datasets)
from ovdet.clip import WeightsNotFoundError
from ovdet.config import ConfigError
from ovdet.data.catalog import UnknownDatasetError
from ovdet.engine.checkpoint import DetectorCheckpointer
from ovdet.engine.distributed import get_rank, init_from_environment, is_main_process, unwrap
from ovdet.engine.evaluation import evaluate_datasets
from ovdet.engine.launch import (default_argument_parser, relaunch_with_torchrun, seed_everything,
                                 setup_config, setup_logging)
from ovdet.engine.trainer import Trainer, training_vocabulary, write_config
from ovdet.modeling.registry import build_model

logger = logging.getLogger("ovdet.train_net")


def main(argv: list[str] | None = None) -> None:
    args = default_argument_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    if args.num_gpus > 1 and "LOCAL_RANK" not in os.environ:
        relaunch_with_torchrun(args.num_gpus)
    try:
        cfg = setup_config(args)
        device = init_from_environment(cfg.MODEL.DEVICE)
        setup_logging(cfg.OUTPUT_DIR, get_rank())
        cfg.defrost()
        cfg.MODEL.DEVICE = device
        cfg.freeze()
        seed_everything(cfg.SEED + get_rank())
        if is_main_process():
            write_config(cfg, os.path.join(cfg.OUTPUT_DIR, "config.yaml"))
        logger.info("config:\n%s", cfg.dump())
        model = build_model(cfg)
        if args.eval_only:
            if not cfg.MODEL.WEIGHTS:
                raise ConfigError("--eval-only needs MODEL.WEIGHTS (a checkpoint to evaluate)")
            DetectorCheckpointer(model).load(cfg.MODEL.WEIGHTS)
            evaluate_datasets(cfg, model)
            return
        model.set_training_vocabulary(training_vocabulary(list(cfg.DATASETS.TRAIN)))
        if torch.distributed.is_initialized():
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None,
                find_unused_parameters=True)
        trainer = Trainer(cfg, model, cfg.SEED)
        trainer.resume_or_load(args.resume)
        trainer.train()
        evaluate_datasets(cfg, unwrap(model))
    except (ConfigError, WeightsNotFoundError, FileNotFoundError, UnknownDatasetError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
