"""fvcore's Checkpointer, also saving and restoring the detector's base class names (the names
it was trained on, which decide the base/novel ensemble weights at inference), with errors that
name the file: a missing checkpoint is a ``FileNotFoundError``, an unreadable one (truncated,
garbage, not a checkpoint) a :class:`CheckpointError`.

Files are read with ``torch.load(weights_only=True)`` first; a file that holds other Python objects
than tensors (numpy arrays in ``"model"``, as fvcore's format allows and converted detectron2
weights have) is read again with ``weights_only=False``, as fvcore itself does: a checkpoint is a
local file the user named, and loading it runs its pickled code, so only load files you trust."""
from __future__ import annotations

import logging
import os
import pickle
import struct
import zipfile
from typing import Any

import torch
from fvcore.common.checkpoint import Checkpointer

logger = logging.getLogger(__name__)

# What torch.load raises on a file that is not a whole checkpoint (truncated zip, random bytes,
# a cut legacy file); a RuntimeError only counts when its message is one of torch's read errors.
_DAMAGED = (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, struct.error)
_DAMAGED_RUNTIME_MESSAGES = ("PytorchStreamReader", "unexpected EOF", "corrupt")
# The start of torch's message when weights_only=True meets an object that is not a tensor.
_WEIGHTS_ONLY_FAILED = "Weights only load failed"


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be read as a checkpoint."""


class DetectorCheckpointer(Checkpointer):
    """Checkpoints hold ``{"model", "optimizer", "iteration", "base_names", "stuff_names"}``
    (the names trained on, things and stuff, and which of them are stuff).

    ``complete=True`` (inference: evaluation, the predictor) refuses a checkpoint that lacks
    weights of the model or has weights of another shape, i.e. one trained with another config,
    with a :class:`CheckpointError`; training (``complete=False``) starts from whatever fits, as
    fvcore does, e.g. a detector fine-tuned from a pretraining run with other heads.
    """

    def __init__(self, model: torch.nn.Module, save_dir: str = "", *, complete: bool = False,
                 **checkpointables: Any) -> None:
        super().__init__(model, save_dir, **checkpointables)
        self.complete = complete
        self._loading = ""  # the path being loaded, for messages

    def save(self, name: str, **kwargs: Any) -> None:
        super().save(name, base_names=list(getattr(self.model, "base_names", [])),
                     stuff_names=list(getattr(self.model, "stuff_names", [])), **kwargs)

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        """fvcore's ``load``; a non-empty ``path`` that is not a file is a FileNotFoundError."""
        if path and not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path} (check MODEL.WEIGHTS or "
                                    "OUTPUT_DIR/last_checkpoint)")
        self._loading = path
        return super().load(path, checkpointables)

    def _load_file(self, f: str) -> dict[str, Any]:
        """fvcore's hook: :func:`load_checkpoint_file`."""
        return load_checkpoint_file(f)

    def _load_model(self, checkpoint: Any):
        base_names = checkpoint.pop("base_names", None)
        stuff_names = checkpoint.pop("stuff_names", None)
        if base_names is not None and hasattr(self.model, "set_base_names"):
            self.model.set_base_names(base_names)
        vocabulary = getattr(self.model, "stuff_vocabulary", None)
        if stuff_names and vocabulary is not None and not len(vocabulary):
            vocabulary.set(stuff_names)  # the stuff it was trained on, until a vocabulary is set
        incompatible = super()._load_model(checkpoint)
        if self.complete and (incompatible.missing_keys or incompatible.incorrect_shapes):
            missing = incompatible.missing_keys
            shapes = [key for key, *_ in incompatible.incorrect_shapes]
            problems = [f"{len(keys)} weights {what} (e.g. {', '.join(keys[:2])})"
                        for keys, what in ((missing, "missing"), (shapes, "of another shape"))
                        if keys]
            raise CheckpointError(
                f"checkpoint {self._loading} does not fit this model: {' and '.join(problems)}; "
                "it was trained with another config: use the config.yaml saved beside it")
        return incompatible


def load_checkpoint_file(f: str) -> dict[str, Any]:
    """The checkpoint dict in file ``f`` (:func:`read_checkpoint`); a :class:`CheckpointError`
    for a damaged or unreadable file or one without a ``"model"`` entry."""
    try:
        checkpoint = read_checkpoint(f)
    except OSError as error:
        raise CheckpointError(f"checkpoint {f} cannot be read ({type(error).__name__}: "
                              f"{error.strerror or error}); check the file's permissions"
                              ) from None
    except (*_DAMAGED, RuntimeError) as error:
        if not is_damaged_file_error(error):
            raise
        raise CheckpointError(f"checkpoint {f} cannot be read, it is truncated or corrupt "
                              f"({type(error).__name__}: {first_sentence(error)})") from None
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"{f} is not an ovdet checkpoint (no 'model' entry)")
    return checkpoint


def read_checkpoint(f: str) -> Any:
    """``torch.load(f)`` on the CPU: tensors only when that suffices, else (the file holds numpy
    arrays or other objects) with ``weights_only=False``, as fvcore loads checkpoints."""
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not str(error).startswith(_WEIGHTS_ONLY_FAILED):
            raise
    logger.info("%s holds objects other than tensors; loading it with weights_only=False", f)
    return torch.load(f, map_location="cpu", weights_only=False)


def is_damaged_file_error(error: BaseException) -> bool:
    """Whether ``error`` (raised by ``torch.load``) means the file is not a whole checkpoint."""
    if isinstance(error, RuntimeError):
        return any(m in str(error) for m in _DAMAGED_RUNTIME_MESSAGES)
    return isinstance(error, _DAMAGED)


def first_sentence(error: BaseException) -> str:
    """The first line and sentence of ``error``'s message, or "no details"."""
    text = str(error).strip()
    return text.split(". ")[0].splitlines()[0] if text else "no details"
