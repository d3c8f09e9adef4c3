"""File IO: atomic writes (a reader never sees a half-written file, and a killed job leaves either
the old file or the new one), JSON writes that stay valid JSON (NaN and infinity become null) and
JSON reads whose errors name the file and what is wrong."""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Sequence


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path`` atomically,
    on an exception it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, +-infinity) replaced by None, in nested dicts,
    lists and tuples (tuples become lists): bare ``NaN`` is not JSON, ``null`` is."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_json(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(value) for value in data]
    return data


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as strict JSON (compact, keys in insertion order) atomically; non-finite
    floats are written as ``null`` (:func:`finite_json`)."""
    with atomic_open(path, "w") as f:
        json.dump(finite_json(data), f, separators=(",", ":"), allow_nan=False)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def read_json(path: str | os.PathLike, what: str = "json file") -> Any:
    """The JSON content of ``path``. ``FileNotFoundError`` ("``what`` not found: path") when it
    is not a file, ``ValueError`` naming the file when it is not valid JSON."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def read_json_dataset(path: str | os.PathLike, kind: str,
                      fields: Mapping[str, Sequence[str]], what: str = "json file") -> dict:
    """:func:`read_json` of a COCO / LVIS style file, schema checked: ``fields`` maps each
    top-level key that must hold a list to the keys every entry of that list must have.
    ``ValueError`` names the file and what is missing (``kind`` names the expected file)."""
    return check_json_dataset(read_json(path, what), str(path), kind, fields)


def check_json_dataset(data: Any, name: str, kind: str, fields: Mapping[str, Sequence[str]]
                       ) -> dict:
    """``data`` when it is a dict whose keys of ``fields`` hold lists of dicts with the listed
    keys (:func:`read_json_dataset`), else ``ValueError`` naming ``name`` (when not empty: the
    caller may name the file itself) and the first lack."""
    if not isinstance(data, dict):
        raise ValueError(f"{name or 'the json'} holds a {type(data).__name__}, expected a {kind} "
                         "json")
    missing = [k for k in fields if not isinstance(data.get(k), list)]
    if missing:
        raise ValueError(f"{name or 'the json'} has no list {missing} at its top level: not a "
                         f"{kind} json")
    where = f"{name}: " if name else ""
    for section, keys in fields.items():
        for i, entry in enumerate(data[section]):
            absent = [k for k in keys if not isinstance(entry, dict) or k not in entry]
            if absent:
                raise ValueError(f"{where}{section}[{i}] has no {absent}: not a {kind} json")
    return data
