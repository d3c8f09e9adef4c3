"""fvcore's Checkpointer, also saving and restoring the detector's base class names (the names
it was trained on, which decide the base/novel ensemble weights at inference), with errors that
name the file: a missing checkpoint is a ``FileNotFoundError``, an unreadable one (truncated,
garbage, not a checkpoint) a :class:`CheckpointError`."""
from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

from fvcore.common.checkpoint import Checkpointer

# What torch.load raises on a file that is not a whole checkpoint (truncated zip, random bytes).
_UNREADABLE = (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile, ValueError,
               OSError)


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be read as a checkpoint."""


class DetectorCheckpointer(Checkpointer):
    """Checkpoints hold ``{"model", "optimizer", "iteration", "base_names"}``."""

    def save(self, name: str, **kwargs: Any) -> None:
        super().save(name, base_names=list(getattr(self.model, "base_names", [])), **kwargs)

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        """fvcore's ``load``; a non-empty ``path`` that is not a file is a FileNotFoundError."""
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path} (check MODEL.WEIGHTS or "
                                    "OUTPUT_DIR/last_checkpoint)")
        return super().load(path, checkpointables)

    def _load_file(self, f: str) -> dict[str, Any]:
        try:
            checkpoint = super()._load_file(f)
        except _UNREADABLE as error:
            detail = str(error).split(". ")[0].splitlines()[0] if str(error) else "no details"
            raise CheckpointError(f"checkpoint {f} cannot be read, it is truncated or corrupt "
                                  f"({type(error).__name__}: {detail})") from None
        if not isinstance(checkpoint, dict) or "model" not in checkpoint:
            raise CheckpointError(f"{f} is not an ovdet checkpoint (no 'model' entry)")
        return checkpoint

    def _load_model(self, checkpoint: Any):
        base_names = checkpoint.pop("base_names", None)
        if base_names is not None and hasattr(self.model, "set_base_names"):
            self.model.set_base_names(base_names)
        return super()._load_model(checkpoint)
