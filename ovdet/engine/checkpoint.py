"""fvcore's Checkpointer, also saving and restoring the detector's base class names (the names
it was trained on, which decide the base/novel ensemble weights at inference)."""
from __future__ import annotations

from typing import Any

from fvcore.common.checkpoint import Checkpointer


class DetectorCheckpointer(Checkpointer):
    """Checkpoints hold ``{"model", "optimizer", "iteration", "base_names"}``."""

    def save(self, name: str, **kwargs: Any) -> None:
        super().save(name, base_names=list(getattr(self.model, "base_names", [])), **kwargs)

    def _load_model(self, checkpoint: Any):
        base_names = checkpoint.pop("base_names", None)
        if base_names is not None and hasattr(self.model, "set_base_names"):
            self.model.set_base_names(base_names)
        return super()._load_model(checkpoint)
