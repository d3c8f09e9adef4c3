"""Batched inference with any vocabulary: detection, and panoptic segmentation with a panoptic
model (``MODEL.PANOPTIC_ON``).

    predictor = OVPredictor(cfg, "output/demo/model_final.pth")
    predictor.set_vocabulary(["tomato", "egg", "ice cube"])
    predictor.set_vocabulary(["tomato", "egg"], prompts="output/demo_prompts/prompts.pt")
    results = predictor(["a.png", array, tensor])   # one dict per image
    results = predictor("a.png")                      # one image: a list of one dict
    predictor.set_vocabulary(["tomato", "egg"], stuff=["table", "wall"])  # panoptic model

Each result holds, when the model has a detector: ``{"boxes": (N, 4) float32 xyxy in original
pixels, "scores": (N,), "classes": (N,) int64 indices into the vocabulary, "labels": list of N
names, "masks": (N, H, W) bool or None}`` (NumPy arrays); and when it has a panoptic branch:
``"panoptic_seg": (ids, segments)``, ``ids`` an (H, W) int32 array of segment ids at the original
size (0 = void) and ``segments`` a list of ``{"id": int, "category_id": int, "isthing": bool,
"score": float, "label": str}``, ``category_id`` indexing the things
(:attr:`OVPredictor.vocabulary`) then the stuff (:attr:`OVPredictor.stuff_vocabulary`) and
``label`` its name. A panoptic model without detector (``MODEL.DETECTOR_ON False``) returns only
``"panoptic_seg"``. Images may be paths, (H, W[, C]) arrays or (C, H, W) tensors of any size and
mode (:func:`ovdet.data.image_io.read_image`); a single path, array or tensor is one image, never a
sequence of them.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .clip.prompts import RegionPrompts
from .config import CfgNode
from .data.image_io import read_image
from .data.mapper import DatasetMapper
from .engine.checkpoint import DetectorCheckpointer
from .modeling.registry import build_model
from .modeling.vocabulary import check_class_names


class OVPredictor:
    """A detector in eval mode with a swappable vocabulary (module doc).

    Args:
        cfg: the config the detector was trained with (e.g. its OUTPUT_DIR/config.yaml).
        weights: checkpoint path (default ``cfg.MODEL.WEIGHTS``).
        batch_size: images per forward pass.
    """

    def __init__(self, cfg: CfgNode, weights: str | None = None, batch_size: int = 8) -> None:
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        weights = weights or self.cfg.MODEL.WEIGHTS
        if not weights:
            raise ValueError("OVPredictor needs weights (a path, or MODEL.WEIGHTS in the config)")
        DetectorCheckpointer(self.model, complete=True).load(weights)
        self.model.eval()
        self.mapper = DatasetMapper(self.cfg, False)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size

    @property
    def vocabulary(self) -> list[str]:
        """The thing names (detection classes)."""
        return list(self.model.vocabulary)

    @property
    def stuff_vocabulary(self) -> list[str]:
        """The stuff names of panoptic segmentation ([] for a model without them)."""
        return list(getattr(self.model, "stuff_vocabulary", ()))

    def set_vocabulary(self, names: Sequence[str], templates: Sequence[str] | None = None,
                       embeddings: torch.Tensor | None = None,
                       stuff: Sequence[str] | None = None,
                       prompts: str | os.PathLike | RegionPrompts | None = None) -> None:
        """Detect ``names`` from now on: text embeddings from ``templates`` (cached on disk), from
        learned region ``prompts`` (a prompts file of :mod:`ovdet.clip.prompts`, learned for this
        model's CLIP, or loaded prompts), or given ``embeddings`` (C, D) whose shape is checked
        against the model; otherwise from the model's own embedding source. ``stuff``: the stuff
        names of a panoptic model (None keeps the current ones, [] removes them; a name may not
        be both a thing and stuff: ValueError); prompts embed them too."""
        if prompts is not None:
            if templates is not None or embeddings is not None:
                raise ValueError("give one of templates, embeddings or prompts")
            if not isinstance(prompts, RegionPrompts):
                prompts = RegionPrompts.load(prompts, self.model.clip)
            names = check_class_names(names)
            with torch.no_grad():
                embeddings = prompts(names)
                stuff_embeddings = prompts(check_class_names(stuff, "stuff vocabulary")) \
                    if stuff else None
            self.model.set_vocabulary(names, embeddings=embeddings, stuff=stuff,
                                      stuff_embeddings=stuff_embeddings)
        elif stuff is None:
            self.model.set_vocabulary(names, templates, embeddings)
        else:
            self.model.set_vocabulary(names, templates, embeddings, stuff=stuff)

    @torch.no_grad()
    def propose(self, images: Sequence | Any) -> list[dict]:
        """Class-agnostic proposals: per image ``{"boxes": (P, 4) float32 xyxy in original
        pixels, "objectness": (P,)}`` (NumPy arrays)."""
        images = as_image_list(images)
        results: list[dict] = []
        for start in range(0, len(images), self.batch_size):
            inputs = [self.mapper.map_image(read_image(image))
                      for image in images[start:start + self.batch_size]]
            results += [{"boxes": p["boxes"].cpu().numpy().astype(np.float32),
                         "objectness": p["objectness"].cpu().numpy()}
                        for p in self.model.propose(inputs)]
        return results

    @torch.no_grad()
    def __call__(self, images: Sequence | Any) -> list[dict]:
        """Results per image (module doc) for a list of images or a single one."""
        if not len(self.model.vocabulary):
            raise RuntimeError("set a vocabulary first: predictor.set_vocabulary([...names])")
        images = as_image_list(images)
        things = self.vocabulary
        categories = things + self.stuff_vocabulary
        results: list[dict] = []
        for start in range(0, len(images), self.batch_size):
            inputs = [self.mapper.map_image(read_image(image))
                      for image in images[start:start + self.batch_size]]
            for output in self.model(inputs):
                result: dict[str, Any] = {}
                if "instances" in output:
                    instances = {k: v.cpu().numpy() for k, v in output["instances"].items()}
                    result.update({"boxes": instances["boxes"].astype(np.float32),
                                   "scores": instances["scores"], "classes": instances["classes"],
                                   "labels": [things[c] for c in instances["classes"]],
                                   "masks": instances.get("masks")})
                if "panoptic_seg" in output:
                    ids, segments = output["panoptic_seg"]
                    result["panoptic_seg"] = (
                        ids.cpu().numpy().astype(np.int32),
                        [{**segment, "label": categories[segment["category_id"]]}
                         for segment in segments])
                results.append(result)
        return results


def as_image_list(images: Sequence | Any) -> list:
    """``images`` as a list: a single path, array, tensor or PIL image is one image (a path is
    never read as its characters, an (H, W, C) array never as H rows)."""
    if isinstance(images, (str, os.PathLike, np.ndarray, torch.Tensor, Image.Image)):
        return [images]
    if not isinstance(images, Sequence):
        raise TypeError(f"images must be a path, an array, a tensor or a list of them, got "
                        f"{type(images).__name__}")
    return list(images)
