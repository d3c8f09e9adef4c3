"""Training loop, checkpoints, evaluation over datasets and (distributed) launch."""
