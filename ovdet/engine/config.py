"""Config defaults of training and evaluation (``SOLVER``, ``TEST``)."""
from __future__ import annotations

from ..config.config import CfgNode


def add_engine_config(cfg: CfgNode) -> None:
    cfg.SOLVER = CfgNode()
    cfg.SOLVER.IMS_PER_BATCH = 16  # total over all processes
    cfg.SOLVER.BASE_LR = 0.02
    cfg.SOLVER.OPTIMIZER = "SGD"  # or "AdamW"
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.WEIGHT_DECAY = 1e-4
    cfg.SOLVER.MAX_ITER = 90000
    cfg.SOLVER.LR_SCHEDULE = "multistep"  # or "cosine"
    cfg.SOLVER.STEPS = (60000, 80000)  # multistep: iterations where the lr drops by GAMMA
    cfg.SOLVER.GAMMA = 0.1
    cfg.SOLVER.WARMUP_ITERS = 1000
    cfg.SOLVER.WARMUP_FACTOR = 0.001
    cfg.SOLVER.CLIP_GRADIENTS = 0.0  # max gradient norm; 0 disables clipping
    cfg.SOLVER.CHECKPOINT_PERIOD = 5000
    cfg.SOLVER.AMP = True  # bf16 autocast, on CUDA only
    cfg.TEST = CfgNode()
    cfg.TEST.EVAL_PERIOD = 0  # 0: evaluate only at the end
    cfg.TEST.IMS_PER_BATCH = 8
    # "ovd": generalized AP with base / novel; "zsd": the zero-shot protocol (ZSD and GZSD,
    # ovdet.evaluation.zsd), unseen = the novel classes
    cfg.TEST.PROTOCOL = "ovd"
