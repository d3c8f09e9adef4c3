"""Writes a toy-world split as real COCO files, so that the COCO readers serve it unchanged.

Layout under ``out`` (COCO's)::

    SPLIT/000001.png                          RGB images, SIZE x SIZE
    annotations/instances_SPLIT.json          things: bbox (xywh), area, RLE segmentation, iscrowd
    annotations/captions_SPLIT.json           one caption per image
    annotations/panoptic_SPLIT.json           segments_info per image (things and stuff)
    annotations/panoptic_SPLIT/000001.png     segment ids, id = R + 256 G + 256^2 B (0 = void)

Thing categories carry ``"split": "base" | "novel"``; panoptic categories carry ``isthing``.
Image ``i`` (1-based id) is drawn from ``numpy.random.default_rng([seed, i])``: the same seed gives
byte-identical files.
"""
from __future__ import annotations

import multiprocessing
import os
import zlib
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ...utils.io import atomic_write_json
from .categories import instances_categories, panoptic_categories
from .scene import Scene, render_scene

DEFAULT_SEEDS = {"train": 1, "val": 2, "test": 3}
DEFAULT_IMAGE_SIZE = 128


def default_seed(split: str) -> int:
    """The documented seed of a split: train 1, val 2, test 3; other names hash to a seed."""
    return DEFAULT_SEEDS.get(split, zlib.crc32(split.encode()) % 100_000 + 1000)


def scene_for(seed: int, image_id: int, size: int = DEFAULT_IMAGE_SIZE) -> Scene:
    """The scene of image ``image_id`` of the world drawn with ``seed``."""
    return render_scene(np.random.default_rng([seed, image_id]), size)


def encode_segment_ids(ids: np.ndarray) -> np.ndarray:
    """(H, W) int segment ids -> (H, W, 3) uint8 in COCO panoptic's encoding."""
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], axis=-1).astype(np.uint8)


def decode_segment_ids(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 in COCO panoptic's encoding -> (H, W) int64 segment ids."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _mask_record(mask: np.ndarray) -> tuple[dict, list[float], int]:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [float(x) for x in mask_utils.toBbox(rle)]
    rle["counts"] = rle["counts"].decode("ascii")
    return rle, bbox, int(mask.sum())


def _write_image(job: tuple[Path, str, int, int, int]) -> tuple[dict, str, list[dict], dict]:
    """Render image ``image_id``, save its RGB and panoptic PNGs; returns its image record, its
    caption, its instance annotations (without ``id``) and its panoptic annotation."""
    out, split, seed, image_id, size = job
    scene = scene_for(seed, image_id, size)
    file_name = f"{image_id:06d}.png"
    Image.fromarray(scene.image).save(out / split / file_name, compress_level=1)
    segment_map = np.zeros((size, size), dtype=np.int64)
    segments, instances = [], []
    for segment_id, segment in enumerate(scene.things + scene.stuff, start=1):
        rle, bbox, area = _mask_record(segment.mask)
        segment_map[segment.mask] = segment_id
        segments.append({"id": segment_id, "category_id": segment.category_id, "area": area,
                         "bbox": bbox, "iscrowd": 0})
        if segment_id <= len(scene.things):
            instances.append({"image_id": image_id, "category_id": segment.category_id,
                              "bbox": bbox, "area": area, "segmentation": rle, "iscrowd": 0})
    Image.fromarray(encode_segment_ids(segment_map)).save(
        out / "annotations" / f"panoptic_{split}" / file_name, compress_level=1)
    image = {"id": image_id, "file_name": file_name, "height": size, "width": size}
    return image, scene.caption, instances, {"image_id": image_id, "file_name": file_name,
                                             "segments_info": segments}


def write_split(out: str | Path, split: str, num_images: int, seed: int | None = None,
                size: int = DEFAULT_IMAGE_SIZE, workers: int | None = None,
                progress: bool = True) -> Path:
    """Generate ``num_images`` scenes with ``workers`` processes (default: one per core) and write
    them under ``out`` (layout in the module doc). Returns the path of the instances json."""
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    seed = default_seed(split) if seed is None else seed
    out = Path(out)
    (out / split).mkdir(parents=True, exist_ok=True)
    (out / "annotations" / f"panoptic_{split}").mkdir(parents=True, exist_ok=True)
    info = {"description": f"ovdet toy world, split {split}", "seed": seed, "image_size": size}
    images, instances, captions, panoptic = [], [], [], []
    jobs = [(out, split, seed, image_id, size) for image_id in range(1, num_images + 1)]
    workers = min(workers or os.cpu_count() or 1, max(1, num_images // 50))
    with multiprocessing.Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap(_write_image, jobs, chunksize=16) if pool else map(_write_image, jobs)
        for image, caption, image_instances, panoptic_record in tqdm(
                results, total=num_images, desc=f"toy world {split}", unit="img",
                disable=not progress):
            images.append(image)
            captions.append({"id": image["id"], "image_id": image["id"], "caption": caption})
            first_id = len(instances) + 1
            instances += [{"id": first_id + k, **a} for k, a in enumerate(image_instances)]
            panoptic.append(panoptic_record)
    annotations = out / "annotations"
    instances_file = annotations / f"instances_{split}.json"
    atomic_write_json(instances_file, {"info": info, "licenses": [], "images": images,
                                       "annotations": instances,
                                       "categories": instances_categories()})
    atomic_write_json(annotations / f"captions_{split}.json",
                      {"info": info, "licenses": [], "images": images, "annotations": captions})
    atomic_write_json(annotations / f"panoptic_{split}.json",
                      {"info": info, "licenses": [], "images": images, "annotations": panoptic,
                       "categories": panoptic_categories()})
    return instances_file
