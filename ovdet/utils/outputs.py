"""Where command-line tools put their results: input expansion, one distinct output name per
input, output folders checked before the first image, writes that name the file they failed on.

Shared by ``tools/demo.py`` and ``tools/panoptic_infer.py``; the rules are documented in
``tools/demo.py``.
"""
from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..data.image_io import ImageReadError, image_files


class OutputError(Exception):
    """An output that cannot be written (folder not creatable or writable, disk full)."""


def expand_inputs(entries: list[str]) -> tuple[list[Path], list[str]]:
    """Image files of ``entries`` (files as given, folders expanded; each file once) and one
    ``skipped:`` message per entry that is missing or holds no image."""
    files: list[Path] = []
    seen: set[Path] = set()
    skipped = []
    for entry in entries:
        try:
            found = image_files([entry])
        except ImageReadError as error:
            skipped.append(str(error))
            continue
        if not found:
            skipped.append(f"{entry}: no image files in this folder")
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                files.append(path)
    return files, skipped


def output_names(paths: list[Path]) -> list[str]:
    """One distinct output name per input (module doc): the stem when no other input shares it
    (case-insensitively), else the path below the inputs' common folder joined by "__"; a name
    still taken gets "-2", "-3", ..."""
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([p.parent for p in resolved])) if resolved else Path()
    stems = [p.stem.casefold() for p in paths]
    names = []
    for path, full in zip(paths, resolved):
        if stems.count(path.stem.casefold()) == 1:
            names.append(path.stem)
        else:
            names.append("__".join(full.relative_to(common).with_suffix("").parts))
    taken: set[str] = set()
    unique = []
    for name in names:
        candidate, count = name, 1
        while candidate.casefold() in taken:
            count += 1
            candidate = f"{name}-{count}"
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


def check_output_folder(output: Path, entries: list[str]) -> None:
    """Refuse an output that is a file, or a folder given as an input (its images would be
    overwritten or mixed with overlays)."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is an existing file; give a folder")
    for entry in entries:
        if Path(entry).is_dir() and output.is_dir() and output.samefile(entry):
            raise ValueError(f"--output {output} is the input folder {entry}; the overlays "
                             "would overwrite your images. Choose another folder")


def prepare_output_folder(output: Path) -> None:
    """Create ``output`` and write a temporary file in it, so that an output that cannot be
    written is one OutputError before any image is processed."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as error:
        raise OutputError(f"cannot write to --output {output} ({reason(error)}); choose a "
                          "writable folder") from None


def reason(error: OSError) -> str:
    """``error``'s message without the path (the caller names it)."""
    return error.strerror or str(error)


def overwritten_input(output: Path, name: str, inputs: set[Path],
                      suffixes: Iterable[str] = (".png", ".json")) -> Path | None:
    """The input that writing ``name``'s results (``name`` + each of ``suffixes``) into
    ``output`` would overwrite, if any."""
    for suffix in suffixes:
        target = (output / f"{name}{suffix}").resolve()
        if target in inputs:
            return target
    return None


def write_file(path: Path, write: Callable[[Path, Any], None], data: Any) -> None:
    """``write(path, data)``; an OSError (folder gone or read-only, disk full) is an
    OutputError that names ``path``."""
    try:
        write(path, data)
    except OSError as error:
        raise OutputError(f"cannot write {path} ({reason(error)}); check that its folder is "
                          "writable and its disk has free space") from None


def unclashing_outputs(paths: list[Path], clash: Callable[[str], Path | None]
                       ) -> list[tuple[Path, str]]:
    """``(input, output name)`` pairs (:func:`output_names`) whose results would overwrite no
    input; ``clash(name)`` is the input that ``name``'s results would overwrite, or None. Each
    input left out is named in one ``skipped:`` line on stderr."""
    jobs = []
    for path, name in zip(paths, output_names(paths)):
        overwritten = clash(name)
        if overwritten is not None:
            print(f"skipped: {path}: its result would overwrite the input {overwritten}; choose "
                  "another --output", file=sys.stderr)
            continue
        jobs.append((path, name))
    return jobs
