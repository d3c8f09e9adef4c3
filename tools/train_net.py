#!/usr/bin/env python
"""Train and evaluate an open-vocabulary detector (detectron2's command line).

    python tools/train_net.py --config-file configs/toyworld/ovrcnn_base.yaml
    python tools/train_net.py --config-file configs/toyworld/ovrcnn_base.yaml --resume
    python tools/train_net.py --config-file output/demo/config.yaml --eval-only \\
        MODEL.WEIGHTS output/demo/model_final.pth DATASETS.TEST '("toyworld_val",)' OUTPUT_DIR out
    python tools/train_net.py --config-file X.yaml --num-gpus 8     # relaunches through torchrun
    python tools/train_net.py --config-file X.yaml --dataset mine_train=train.json:imgs/:novel=zebra \\
        --dataset mine_val=val.json:imgs/ DATASETS.TRAIN '("mine_train",)' \\
        DATASETS.TEST '("mine_val",)'

Training uses the base classes of DATASETS.TRAIN only, plus, with DATASETS.IMAGE_LABELLED or
DATASETS.PSEUDO_BOXES, every class of those image-labelled or caption pseudo-box datasets (they stay
novel unless a human-labelled dataset has them);
evaluation uses every class of each DATASETS.TEST dataset (generalized setting) and writes
OUTPUT_DIR/eval_metrics.json. Every dataset name is checked before the model is built. A training
run writes its full config to OUTPUT_DIR/config.yaml; ``--eval-only`` writes
OUTPUT_DIR/config_eval.yaml and never changes a run's config.yaml. ``--dataset`` registers a
COCO-format dataset (``:novel=a,b`` names novel categories; a name in DATASETS.TRAIN, and not in
DATASETS.IMAGE_LABELLED or DATASETS.PSEUDO_BOXES, keeps base categories only). Bad arguments,
configs, datasets or checkpoints end in one ``error:`` line and exit status 1.
"""
from __future__ import annotations

import logging
import os
import sys

import torch

import ovdet.data  # noqa: F401  (registers the built-in datasets)
from ovdet.clip import WeightsNotFoundError
from ovdet.config import ConfigError
from ovdet.data.catalog import DatasetCatalog, DatasetError, UnknownDatasetError
from ovdet.engine.checkpoint import CheckpointError, DetectorCheckpointer
from ovdet.engine.distributed import get_rank, init_from_environment, is_main_process, unwrap
from ovdet.engine.evaluation import check_test_protocol, evaluate_datasets
from ovdet.engine.launch import (default_argument_parser, register_datasets,
                                 relaunch_with_torchrun, seed_everything, setup_config,
                                 setup_logging)
from ovdet.data.loader import check_dataset_ratios
from ovdet.engine.trainer import (Trainer, check_unlabelled_options, human_labelled,
                                  training_base_names, training_stuff, training_vocabulary,
                                  write_config)
from ovdet.modeling.roi_heads.distillation import check_teacher_weights, teacher_weights
from ovdet.modeling.registry import build_model
from ovdet.modeling.vocabulary import check_class_names

logger = logging.getLogger("ovdet.train_net")
# What a user's config, data or files can cause, and a diverging loss (its message says what to
# do): one "error:" line, no traceback.
USER_ERRORS = (ConfigError, WeightsNotFoundError, FileNotFoundError, UnknownDatasetError,
               DatasetError, CheckpointError, FloatingPointError)


def check_datasets(cfg, eval_only: bool) -> tuple[list[str], list[str], list[str]]:
    """Fail fast on unregistered names (DATASETS.TEST, and DATASETS.TRAIN when training), on
    class lists the model would refuse, on unusable training sets and on bad
    DATALOADER.DATASET_RATIOS; returns the training vocabulary, its base classes (those of the
    human-labelled datasets, not in DATASETS.IMAGE_LABELLED or DATASETS.PSEUDO_BOXES) and the
    stuff classes ([] for
    ``eval_only``)."""
    names = [] if eval_only else list(cfg.DATASETS.TRAIN)
    image_labelled = list(cfg.DATASETS.IMAGE_LABELLED)
    pseudo_boxes = [] if eval_only else list(cfg.DATASETS.PSEUDO_BOXES)
    if not eval_only:
        DatasetCatalog.check(cfg.DATASETS.TRAIN, "DATASETS.TRAIN")
        check_unlabelled_options(cfg)
        if len(cfg.DATALOADER.DATASET_RATIOS):
            check_dataset_ratios(cfg.DATALOADER.DATASET_RATIOS, len(names))
    DatasetCatalog.check(cfg.DATASETS.TEST, "DATASETS.TEST")
    vocabulary = [] if eval_only else training_vocabulary(names, image_labelled, pseudo_boxes)
    base = [] if eval_only else training_base_names(names, image_labelled, pseudo_boxes)
    stuff = [] if eval_only else training_stuff(names)
    for name in dict.fromkeys([*names, *pseudo_boxes, *cfg.DATASETS.TEST]):
        check_dataset_classes(name)
    panoptic_tests = [n for n in cfg.DATASETS.TEST
                      if DatasetCatalog.metadata(n).evaluator_type == "coco_panoptic"]
    if panoptic_tests and not cfg.MODEL.PANOPTIC_ON:
        raise ConfigError(f"DATASETS.TEST names panoptic datasets {panoptic_tests}; evaluating "
                          "them needs a panoptic model (MODEL.PANOPTIC_ON True)")
    check_test_protocol(cfg.TEST.PROTOCOL, list(cfg.DATASETS.TEST))
    box_tests = [n for n in cfg.DATASETS.TEST if n not in panoptic_tests]
    if box_tests and not cfg.MODEL.DETECTOR_ON:
        raise ConfigError(f"DATASETS.TEST names detection datasets {box_tests}; a model without "
                          "a detector (MODEL.DETECTOR_ON False) cannot be evaluated on them")
    if cfg.MODEL.PANOPTIC_ON:
        not_panoptic = [n for n in names
                        if DatasetCatalog.metadata(n).evaluator_type != "coco_panoptic"]
        if not_panoptic:
            raise ConfigError(f"MODEL.PANOPTIC_ON trains on panoptic datasets (segments of "
                              f"things and stuff); {not_panoptic} are not: use e.g. "
                              "toyworld_train_panoptic")
    return vocabulary, base, stuff


def check_dataset_classes(name: str) -> None:
    """A DatasetError when dataset ``name``'s class names are not a valid vocabulary (e.g. two
    names of one class, "Person" and "person"), before the model is built or trained."""
    metadata = DatasetCatalog.metadata(name)
    try:
        check_class_names(metadata.thing_classes, f"class list of dataset {name!r}")
    except ValueError as error:
        where = metadata.json_file or "its annotation file"
        raise DatasetError(f"{error}; fix the categories in {where}") from None


def check_weights(cfg, eval_only: bool, resume: bool = False) -> None:
    """MODEL.WEIGHTS must name an existing file when given, and be given for ``eval_only``; it
    need not exist when ``resume`` will continue from OUTPUT_DIR/last_checkpoint (never read).
    Training with TeacherDistillation needs its teacher's checkpoint, resumed or not."""
    if eval_only and not cfg.MODEL.WEIGHTS:
        raise ConfigError("--eval-only needs MODEL.WEIGHTS (a checkpoint to evaluate)")
    resuming = (resume and not eval_only
                and os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")))
    if cfg.MODEL.WEIGHTS and not resuming and not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise FileNotFoundError(f"MODEL.WEIGHTS file not found: {cfg.MODEL.WEIGHTS}")
    if not eval_only and "TeacherDistillation" in cfg.MODEL.CRITERIA:  # read even on --resume
        check_teacher_weights(teacher_weights(cfg))


def main(argv: list[str] | None = None) -> None:
    args = default_argument_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    if args.num_gpus > 1 and "LOCAL_RANK" not in os.environ:
        relaunch_with_torchrun(args.num_gpus)
    try:
        cfg = setup_config(args)
        box_labelled = human_labelled(cfg.DATASETS.TRAIN, cfg.DATASETS.IMAGE_LABELLED,
                                      cfg.DATASETS.PSEUDO_BOXES)
        register_datasets(args.dataset, [] if args.eval_only else box_labelled)
        vocabulary, base, stuff = check_datasets(cfg, args.eval_only)
        check_weights(cfg, args.eval_only, args.resume)
        device = init_from_environment(cfg.MODEL.DEVICE)
        setup_logging(cfg.OUTPUT_DIR, get_rank())
        cfg.defrost()
        cfg.MODEL.DEVICE = device
        cfg.freeze()
        seed_everything(cfg.SEED + get_rank())
        logger.info("config:\n%s", cfg.dump())
        model = build_model(cfg)  # first: a config the model refuses is never written
        if is_main_process():
            name = "config_eval.yaml" if args.eval_only else "config.yaml"
            write_config(cfg, os.path.join(cfg.OUTPUT_DIR, name))
        if args.eval_only:
            DetectorCheckpointer(model, complete=True).load(cfg.MODEL.WEIGHTS)
            evaluate_datasets(cfg, model)
            return
        model.set_training_vocabulary(vocabulary, stuff=stuff)
        if base != vocabulary:  # classes known from image labels only stay novel
            model.set_base_names(base + list(model.stuff_names))
        if torch.distributed.is_initialized():
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None,
                find_unused_parameters=True)
        trainer = Trainer(cfg, model, cfg.SEED)
        trainer.resume_or_load(args.resume)
        trainer.train()
        evaluate_datasets(cfg, unwrap(model))
    except USER_ERRORS as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
