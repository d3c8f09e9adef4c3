"""What a CLIP knows of the toy world, measured on freshly drawn held-out scenes.

* ``zero_shot_accuracy``: single-object scenes, CLS embedding vs. template-ensembled class
  embeddings of all thing categories; accuracy overall, on base and on novel categories, and per
  category.
* ``box_crop_accuracy``: every ground-truth box of a COCO instances file, cropped and encoded.
* ``dense_patch_accuracy``: scenes of 1-3 objects; every patch whose pixels are at least half one
  thing is classified by its value-trick dense embedding among all thing categories; accuracy
  overall and per category.

Scenes come from ``numpy.random.default_rng([seed, index])``; use seeds never used in training
(ovdet's toy CLIP was trained on seed 1000; the probes default to 9001 and 9002).
"""
from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..clip import CLIPBundle, CLIPViTTrunk, compute_class_embeddings
from ..data.toyworld import THING_CATEGORIES, render_scene

ZERO_SHOT_SEED = 9001
DENSE_SEED = 9002


def _thing_embeddings(clip: CLIPBundle) -> tuple[torch.Tensor, list[int]]:
    names = [c.name for c in THING_CATEGORIES]
    return compute_class_embeddings(clip, names), [c.id for c in THING_CATEGORIES]


def _summary(correct: dict[int, list[bool]]) -> dict:
    by_name = {c.name: float(np.mean(correct[c.id])) for c in THING_CATEGORIES if correct[c.id]}
    def pooled(split: str | None) -> float:
        values = [v for c in THING_CATEGORIES if split in (None, c.split) for v in correct[c.id]]
        return float(np.mean(values)) if values else float("nan")
    return {"overall": pooled(None), "base": pooled("base"), "novel": pooled("novel"),
            "min_category": min(by_name.values()), "per_category": by_name}


@torch.no_grad()
def zero_shot_accuracy(clip: CLIPBundle, num_images: int = 600, seed: int = ZERO_SHOT_SEED,
                       batch_size: int = 128) -> dict:
    """Single-object zero-shot classification accuracy (fractions in [0, 1])."""
    text, ids = _thing_embeddings(clip)
    scenes = [render_scene(np.random.default_rng([seed, i]), num_objects=(1, 1))
              for i in range(num_images)]
    correct: dict[int, list[bool]] = defaultdict(list)
    for start in range(0, num_images, batch_size):
        chunk = scenes[start:start + batch_size]
        images = torch.stack([clip.preprocess(Image.fromarray(s.image)) for s in chunk])
        image = F.normalize(clip.model.encode_image(images).float(), dim=-1)
        predicted = (image @ text.T).argmax(dim=1)
        for scene, p in zip(chunk, predicted.tolist()):
            truth = scene.things[0].category_id
            correct[truth].append(ids[p] == truth)
    return _summary(correct)


def patch_labels(scene_masks: list[tuple[int, np.ndarray]], grid: int, min_fraction: float = 0.5
                 ) -> np.ndarray:
    """(grid, grid) thing category id per patch (0: no thing covers ``min_fraction`` of it)."""
    size = scene_masks[0][1].shape[0] if scene_masks else grid
    cell = size // grid
    labels = np.zeros((grid, grid), dtype=np.int64)
    for category_id, mask in scene_masks:
        coverage = mask[:cell * grid, :cell * grid].reshape(grid, cell, grid, cell).mean(axis=(1, 3))
        labels[coverage >= min_fraction] = category_id
    return labels


@torch.no_grad()
def dense_patch_accuracy(clip: CLIPBundle, num_images: int = 300, seed: int = DENSE_SEED,
                         batch_size: int = 64) -> dict:
    """Accuracy of value-trick dense patch classification on patches inside things."""
    text, ids = _thing_embeddings(clip)
    trunk = CLIPViTTrunk(clip.model.visual, keep_last=1)
    grid = trunk.native_grid[0]
    correct: dict[int, list[bool]] = defaultdict(list)
    for start in range(0, num_images, batch_size):
        scenes = [render_scene(np.random.default_rng([seed, i]))
                  for i in range(start, min(start + batch_size, num_images))]
        images = torch.stack([clip.preprocess(Image.fromarray(s.image)) for s in scenes])
        dense = F.normalize(trunk.dense_embeddings(trunk(images)).float(), dim=1)
        predicted = torch.einsum("bdhw,cd->bchw", dense, text).argmax(dim=1).numpy()
        for scene, prediction in zip(scenes, predicted):
            labels = patch_labels([(t.category_id, t.mask) for t in scene.things], grid)
            for truth, p in zip(labels[labels > 0], prediction[labels > 0]):
                correct[int(truth)].append(ids[p] == truth)
    return _summary(correct)


@torch.no_grad()
def box_crop_accuracy(clip: CLIPBundle, instances_json: str | Path, image_root: str | Path,
                      max_images: int | None = None, batch_size: int = 128) -> dict:
    """Classify every ground-truth box of a COCO instances file by cropping it (square, 10%
    context) and encoding the crop; accuracy against the file's own categories, split into
    ``base`` / ``novel`` by their ``split`` field."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(instances_json))
    categories = coco.loadCats(coco.getCatIds())
    text = compute_class_embeddings(clip, [c["name"] for c in categories])
    column = {c["id"]: k for k, c in enumerate(categories)}
    split_of = {c["id"]: c.get("split", "base") for c in categories}
    crops, truths = [], []
    for image_id in sorted(coco.getImgIds())[:max_images]:
        info = coco.loadImgs(image_id)[0]
        image = Image.open(Path(image_root) / info["file_name"]).convert("RGB")
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            x, y, w, h = ann["bbox"]
            side = max(w, h) * 1.1
            cx, cy = x + w / 2, y + h / 2
            crops.append(image.crop((cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)))
            truths.append(ann["category_id"])
    if not crops:
        raise ValueError(f"{instances_json} has no boxes to classify")
    predicted = []
    for start in range(0, len(crops), batch_size):
        batch = torch.stack([clip.preprocess(c) for c in crops[start:start + batch_size]])
        image = F.normalize(clip.model.encode_image(batch).float(), dim=-1)
        predicted.extend((image @ text.T).argmax(dim=1).tolist())
    hits = np.array([column[t] == p for t, p in zip(truths, predicted)])
    splits = np.array([split_of[t] for t in truths])
    def accuracy(selected: np.ndarray) -> float:
        return float(hits[selected].mean()) if selected.any() else float("nan")
    return {"overall": accuracy(np.ones_like(hits)), "base": accuracy(splits == "base"),
            "novel": accuracy(splits == "novel"), "boxes": int(len(hits))}
