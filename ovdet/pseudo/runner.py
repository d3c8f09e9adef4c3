"""Sharded, resumable pseudo-box generation over labelled images, and the COCO json it ends in.

Each image is a record ``{"id", "file_name"[, "height", "width"], LABELS}``; the generator gets a
batch of images and their records' ``labels`` field, ``generator(images, labels) ->
[ImageResult]``: ``"captions"`` (a caption file; PB-OVD's
:class:`~ovdet.pseudo.generator.PseudoBoxGenerator`, or self-training's
:class:`~ovdet.pseudo.self_training.DetectorLabeller`) or ``"pos_category_ids"`` (an
image-labelled file's category ids; :class:`~ovdet.pseudo.self_training.DetectorLabeller`).

Images are processed in shards of ``shard_size`` (in file order), each written atomically to
``OUT.parts/shard_NNNNN.json`` as soon as it is done: a run killed at any moment loses at most the
shard in progress, and a rerun skips finished shards. ``OUT.parts/run.json`` holds the run's
fingerprint (the caller's settings, shard size, image root, records); shards of a different run
are never mixed in (rerun with ``overwrite=True`` to start again).

When every shard is done the shards are merged into ``OUT``, a COCO instances json (images that
got at least one box; annotations ``{"id", "image_id", "category_id", "bbox" (xywh), "area",
"iscrowd": 0, "pseudo_score"}``; the vocabulary's categories), and a report is written next to it
(``OUT`` with suffix ``.report.json``): counts, images/s and one entry per problem
``{"image_id", "file_name", "problem"}`` (unreadable image, empty caption, no vocabulary noun, a
category without a candidate box, ...). A problem never stops the run.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..data.image_io import ImageReadError, read_image
from ..utils.io import atomic_write_json
from .generator import ImageResult

# (images as (H, W, 3) uint8 arrays, their records' labels) -> one ImageResult per image
Generator = Callable[[list[np.ndarray], list], list[ImageResult]]


def parts_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def report_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".report.json")


def file_signature(path: str | Path) -> list:
    """What identifies a file's contents cheaply (for a run's settings): resolved path, size,
    mtime."""
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def fingerprint(settings: dict, records: Sequence[dict]) -> str:
    """sha256 of the run's settings and of its records."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(json.dumps(list(records), sort_keys=True).encode())
    return digest.hexdigest()


def _prepare_parts(out: Path, run_id: str, overwrite: bool) -> Path:
    parts = parts_dir(out)
    manifest = parts / "run.json"
    if parts.exists() and overwrite:
        shutil.rmtree(parts)
    if manifest.is_file():
        previous = json.loads(manifest.read_text()).get("fingerprint")
        if previous != run_id:
            raise ValueError(f"{parts} holds shards of a different run (other options, shard "
                             "size, vocabulary, CLIP, detector, proposals, image root or "
                             "input records); rerun with --overwrite to start again")
    parts.mkdir(parents=True, exist_ok=True)
    atomic_write_json(manifest, {"fingerprint": run_id})
    return parts


def _read_shard(path: Path) -> dict | None:
    """A finished shard, or None when it is missing or damaged (then it is made again)."""
    try:
        shard = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(shard, dict) or not all(isinstance(shard.get(k), list)
                                              for k in ("images", "boxes", "problems")):
        return None
    return shard


def _process_shard(generator: Generator, records: Sequence[dict], image_root: Path,
                   batch_size: int, labels: str, progress: tqdm) -> dict:
    """{"images": [...], "boxes": [[image_id, category_id, x1, y1, x2, y2, score]], "problems"}."""
    shard: dict = {"images": [], "boxes": [], "problems": []}
    for start in range(0, len(records), batch_size):
        batch, images = [], []
        for record in records[start:start + batch_size]:
            try:
                images.append(read_image(image_root / record["file_name"]))
                batch.append(record)
            except ImageReadError as error:
                shard["problems"].append({"image_id": record["id"],
                                          "file_name": record["file_name"],
                                          "problem": f"unreadable image: {error.reason}"})
        results = generator(images, [r[labels] for r in batch]) if batch else []
        for record, image, result in zip(batch, images, results):
            if result.boxes:
                shard["images"].append({"id": record["id"], "file_name": record["file_name"],
                                        "height": int(image.shape[0]),
                                        "width": int(image.shape[1])})
            shard["boxes"] += [[record["id"], box.category_id, *box.box, box.score]
                               for box in result.boxes]
            shard["problems"] += [{"image_id": record["id"], "file_name": record["file_name"],
                                   "problem": problem} for problem in result.problems]
        progress.update(len(records[start:start + batch_size]))
    return shard


def summary(report: dict, out: str | Path, what: str = "pseudo boxes") -> str:
    """One line on a finished run: boxes, images, output and where its problems are listed."""
    return (f"{what}: {report['boxes']} boxes on {report['images_with_boxes']} of "
            f"{report['images']} images -> {out}; {len(report['problems'])} problems listed in "
            f"{report_path(out)}")


def generate_pseudo_boxes(generator: Generator, records: Sequence[dict],
                          image_root: str | Path, out: str | Path, settings: dict,
                          categories: list[dict], shard_size: int = 256, batch_size: int = 32,
                          overwrite: bool = False, show_progress: bool = True,
                          labels: str = "captions") -> dict:
    """Run (or resume) the generation and write ``out`` and its report (module doc). Returns
    the report. ``labels``: the records' field the generator gets (``"captions"`` or
    ``"pos_category_ids"``)."""
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be at least 1")
    out, image_root = Path(out), Path(image_root)
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give a json file path")
    if not image_root.is_dir():
        raise ValueError(f"image root {image_root} is not a directory")
    parts = _prepare_parts(out, fingerprint({**settings, "shard_size": shard_size,
                                             "image_root": str(image_root.resolve())}, records),
                           overwrite)
    started = time.perf_counter()
    processed = 0
    shards = []
    with tqdm(total=len(records), unit="img", desc="pseudo boxes", disable=not show_progress,
              dynamic_ncols=True) as progress:
        for index, start in enumerate(range(0, len(records), shard_size)):
            path = parts / f"shard_{index:05d}.json"
            chunk = records[start:start + shard_size]
            shard = _read_shard(path)
            if shard is None:
                shard = _process_shard(generator, chunk, image_root, batch_size, labels, progress)
                atomic_write_json(path, shard)
                processed += len(chunk)
            else:
                progress.update(len(chunk))
            shards.append(shard)
    seconds = time.perf_counter() - started
    images = [image for shard in shards for image in shard["images"]]
    annotations = []
    for shard in shards:
        for image_id, category_id, x1, y1, x2, y2, score in shard["boxes"]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category_id, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                                "pseudo_score": score})
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, {"info": {"description": "ovdet pseudo boxes", **settings},
                            "images": images, "annotations": annotations,
                            "categories": categories})
    problems = [p for shard in shards for p in shard["problems"]]
    report = {"images": len(records), "images_with_boxes": len(images),
              "boxes": len(annotations), "images_processed_this_run": processed,
              "images_per_second": round(processed / seconds, 2) if processed else None,
              "problems": problems}
    atomic_write_json(report_path(out), report)
    return report
