"""Pseudo boxes for a batch of captioned images: nouns -> activation maps -> candidates -> best box.

For every category a caption names (:class:`NounVocabulary`), the generator keeps one box, the
best-scoring candidate, as PB-OVD: candidates are the connected regions of the category's
activation map at several thresholds (box-free), or the boxes of a class-agnostic proposal
source when one is given. Images are resized so that their longer side is ``input_size``
(each side a multiple of the patch size) before the CLIP trunk; boxes come back in original
pixels.

Background names (stuff such as "sky", "wall") join the softmax so that places that are no
vocabulary category have somewhere else to go; without them a ``dense`` map lights up the whole
image (toy-world precision falls from 92% to 54%). :func:`default_background` picks them: the toy
world's stuff for a toy-world vocabulary, COCO panoptic's 53 stuff names otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..clip.load import CLIPBundle
from ..clip.rma import box_probabilities
from ..clip.text import DEFAULT_TEMPLATES, class_embeddings
from ..clip.vit import CLIPViTTrunk
from .candidates import component_boxes
from .maps import ActivationMaps, normalize_maps
from .scoring import SCORERS, activation_scores, combine_scores
from ..data.stuff_names import COCO_STUFF_NAMES
from ..data.toyworld.categories import STUFF_CATEGORIES, THING_CATEGORIES
from .vocabulary import NounVocabulary, name_phrase, plurals

# (images as (H, W, 3) uint8 arrays) -> per image (R, 4) float xyxy boxes in original pixels
ProposalSource = Callable[[list[np.ndarray]], list[torch.Tensor]]


def default_background(vocabulary: NounVocabulary) -> list[str]:
    """Background names for ``vocabulary``: the toy world's stuff names when every vocabulary
    name is a toy-world thing, COCO panoptic's stuff names (:mod:`ovdet.data.stuff_names`)
    otherwise; names that the vocabulary itself uses, singular or plural (e.g. LVIS's
    "pillow"), are left out."""
    toy_things = {name_phrase(c.name) for c in THING_CATEGORIES}
    if {name_phrase(n) for n in vocabulary.names} <= toy_things:
        candidates: Sequence[str] = [c.name for c in STUFF_CATEGORIES]
    else:
        candidates = COCO_STUFF_NAMES
    used = {p for c in vocabulary.categories for p in (name_phrase(c.name), *c.phrases)}
    return [name for name in candidates
            if used.isdisjoint([name_phrase(name), *plurals(name_phrase(name))])]


@dataclass(frozen=True)
class PseudoBoxOptions:
    """How pseudo boxes are made (module doc of :mod:`ovdet.pseudo.maps` for the map options).

    ``zero_below``: normalised activations under this fraction of the maximum are zeroed;
    ``thresholds``: levels at which connected regions become candidates; ``scorer``:
    "activation" (PB-OVD), "region" (RMA) or "combined"; ``region_weight``: the region score's
    weight in "combined"."""

    method: str = "dense"
    source: str = "window"
    window: int = 3
    gradcam_block: int = -2
    input_size: int = 192
    zero_below: float = 0.4
    thresholds: tuple[float, ...] = (0.4, 0.5, 0.7, 0.85)
    scorer: str = "activation"
    region_weight: float = 0.5
    templates: tuple[str, ...] = field(default=DEFAULT_TEMPLATES)

    def __post_init__(self) -> None:
        if self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS}, got {self.scorer!r}")
        if not 0 <= self.zero_below < 1:
            raise ValueError(f"zero_below must be in [0, 1), got {self.zero_below}")
        if not self.thresholds or not all(0 < t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be in (0, 1], got {self.thresholds}")
        if min(self.thresholds) < self.zero_below:
            raise ValueError(f"thresholds {self.thresholds} below zero_below {self.zero_below} "
                             "find the same regions as zero_below itself; raise them")
        if not 0 <= self.region_weight <= 1:
            raise ValueError(f"region_weight must be in [0, 1], got {self.region_weight}")
        if self.input_size < 1:
            raise ValueError(f"input_size must be positive, got {self.input_size}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class PseudoBox:
    """One pseudo box: COCO ``category_id``, xyxy ``box`` in original pixels, ``score``."""

    category_id: int
    box: tuple[float, float, float, float]
    score: float


@dataclass
class ImageResult:
    """What became of one image: its boxes, and a reason for every category or image that
    got none (empty when everything worked)."""

    boxes: list[PseudoBox] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def caption_categories(captions: Sequence, vocabulary: NounVocabulary) -> tuple[list[int], str]:
    """Category ids named in ``captions`` (first-mention order), or [] and the reason."""
    texts = [c for c in captions if isinstance(c, str)]
    if len(texts) < len(captions):
        return [], "a caption is not a string"
    if not any(t.strip() for t in texts):
        return [], "empty caption"
    found: list[int] = []
    for text in texts:
        found += [c for c in vocabulary.match(text) if c not in found]
    return found, "" if found else "no vocabulary noun in the captions"


def input_shape(height: int, width: int, input_size: int, patch: int) -> tuple[int, int]:
    """Trunk input (h, w): longer side ``input_size``, aspect kept, sides rounded to multiples
    of ``patch`` (at least one patch)."""
    scale = input_size / max(height, width)
    return (max(patch, round(height * scale / patch) * patch),
            max(patch, round(width * scale / patch) * patch))


class PseudoBoxGenerator:
    """Makes pseudo boxes (module doc).

    Args:
        clip: the shared CLIP.
        vocabulary: categories and their names.
        options: :class:`PseudoBoxOptions`.
        background: extra names (e.g. stuff) that join the softmax of ``dense`` maps, the
            softmax Grad-CAM and the region scores, and are never given boxes.
        proposals: optional class-agnostic candidate source (replaces box-free candidates).
    """

    def __init__(self, clip: CLIPBundle, vocabulary: NounVocabulary,
                 options: PseudoBoxOptions = PseudoBoxOptions(), background: Sequence[str] = (),
                 proposals: ProposalSource | None = None, device: str | torch.device = "cpu"
                 ) -> None:
        shared = set(vocabulary.names) & set(background)
        if shared:
            raise ValueError(f"background names repeat vocabulary names: {sorted(shared)}")
        self.clip, self.vocabulary, self.options = clip, vocabulary, options
        self.device = torch.device(device)
        model = clip.model.to(self.device).eval()
        self.trunk = CLIPViTTrunk(model.visual, keep_last=len(model.visual.transformer.resblocks))
        self.logit_scale = float(model.logit_scale.detach().exp())
        self.text = class_embeddings(clip, [*vocabulary.names, *background],
                                     options.templates).to(self.device)
        self.maps = ActivationMaps(self.trunk, self.logit_scale, options.method, options.source,
                                   options.window, options.gradcam_block)
        self.proposals = proposals
        mean, std = clip.image_normalization()
        self.mean = torch.tensor(mean, device=self.device)[:, None, None]
        self.std = torch.tensor(std, device=self.device)[:, None, None]
        self.row_of = {c.id: k for k, c in enumerate(vocabulary.categories)}

    def __call__(self, images: list[np.ndarray], captions: list[Sequence]) -> list[ImageResult]:
        """``images``: (H, W, 3) uint8 arrays; ``captions[b]``: the captions of image b."""
        results = [ImageResult() for _ in images]
        queries: list[list[int]] = []
        for result, texts in zip(results, captions):
            found, problem = caption_categories(texts, self.vocabulary)
            queries.append(found)
            if problem:
                result.problems.append(problem)
        todo = [b for b, q in enumerate(queries) if q]
        proposals = None
        if self.proposals and todo:
            boxes = self.proposals([images[b] for b in todo])
            if len(boxes) != len(todo):
                raise ValueError(f"the proposal source gave boxes for {len(boxes)} of "
                                 f"{len(todo)} images")
            proposals = dict(zip(todo, boxes))
        groups: dict[tuple[int, int], list[int]] = {}
        for b in todo:
            shape = input_shape(*images[b].shape[:2], self.options.input_size,
                                self.trunk.patch_size)
            groups.setdefault(shape, []).append(b)
        for shape, members in groups.items():
            batch = torch.stack([self._to_input(images[b], shape) for b in members])
            rows = [[self.row_of[c] for c in queries[b]] for b in members]
            maps, output = self.maps(batch, rows, self.text)
            candidates = []
            for b, image_maps in zip(members, maps):
                height, width = images[b].shape[:2]
                normalized = normalize_maps(image_maps, (height, width), self.options.zero_below)
                if proposals is not None:
                    boxes = proposals[b].to(self.device).float()
                    candidates.append([(m, boxes) for m in normalized])
                else:
                    candidates.append([(m, component_boxes(m, self.options.thresholds)
                                        .to(self.device)) for m in normalized])
            self._select(members, queries, candidates, output, shape, images, results)
        return results

    def _to_input(self, image: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)
        x = F.interpolate(x[None].float() / 255, size=shape, mode="bilinear", antialias=True,
                          align_corners=False)[0]
        return (x - self.mean) / self.std

    def _select(self, members: list[int], queries: list[list[int]],
                candidates: list[list[tuple[torch.Tensor, torch.Tensor]]], output,
                shape: tuple[int, int], images: list[np.ndarray], results: list[ImageResult]
                ) -> None:
        """Score every candidate of every (image, category) and keep the best box."""
        per_image_boxes = []
        for b, entries in zip(members, candidates):
            height, width = images[b].shape[:2]
            scale = torch.tensor([shape[1] / width, shape[0] / height] * 2, device=self.device)
            boxes = torch.cat([c for _, c in entries]) if entries else torch.zeros(0, 4)
            per_image_boxes.append(boxes.to(self.device) * scale)
        need_region = self.options.scorer != "activation"
        with torch.no_grad():
            region = box_probabilities(self.trunk, output, per_image_boxes, self.text,
                                       self.logit_scale) if need_region else None
        for i, (b, entries) in enumerate(zip(members, candidates)):
            start = 0
            for category_id, (activation, boxes) in zip(queries[b], entries):
                name = self.vocabulary.categories[self.row_of[category_id]].name
                stop = start + len(boxes)
                if len(boxes) == 0 or activation.max() <= 0:
                    results[b].problems.append(f"no candidate box for '{name}'")
                    start = stop
                    continue
                fit = activation_scores(activation, boxes)
                text_score = region[i][start:stop, self.row_of[category_id]] if need_region \
                    else fit
                scores = combine_scores(fit, text_score, self.options.scorer,
                                        self.options.region_weight)
                best = int(scores.argmax())
                results[b].boxes.append(PseudoBox(category_id, tuple(float(v) for v in
                                                                    boxes[best].tolist()),
                                                  float(scores[best])))
                start = stop
