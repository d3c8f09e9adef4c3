"""Self-training's labelling side (PromptDet): pseudo boxes for image-labelled images from a
trained detector.

PromptDet's second stage trains on images that carry only image-level labels. For every labelled
category of an image, the detector's top-scoring candidate for that category becomes the image's
box for it, with that score: the candidates and scores are
:meth:`~ovdet.modeling.meta_arch.ov_rcnn.OpenVocabRCNN.score_proposals`' (the configured
scorer's final scores for the vocabulary, before threshold and NMS). A category is labelled by
an image's captions (the nouns :class:`~ovdet.pseudo.vocabulary.NounVocabulary` finds, as
PB-OVD) or by its tags (category ids). :class:`DetectorLabeller` is a generator of
:func:`ovdet.pseudo.runner.generate_pseudo_boxes`, which makes the run sharded and resumable
(``tools/self_train_labels.py``).

Tag file format (Detic's convention for image-labelled data): a COCO-style json whose images
carry the ids of the categories they show::

    {"images": [{"id": 9, "file_name": "000009.jpg", "height": 480, "width": 640,
                 "pos_category_ids": [1, 7]}, ...],
     "categories": [{"id": 1, "name": "tomato"}, ...]}

``categories`` is optional (then the vocabulary is given apart); other keys (Detic's
``neg_category_ids``, ``annotations``) are ignored. An image without ``pos_category_ids`` has no
label (a problem in the report), but a file in which no image has one is refused.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from ..utils.io import read_json_dataset
from .captions import IMAGE_KEYS, check_image_records
from .generator import ImageResult, PseudoBox, caption_categories
from .vocabulary import NounVocabulary, name_phrase

TAGS = "pos_category_ids"  # the image-level labels of a tag file
LABEL_FIELDS = ("captions", TAGS)
MIN_SIDE = 1e-2  # pixels: thinner candidates never become boxes (OpenVocabRCNN.select drops them)


class Detector(Protocol):
    """What the labeller uses of an :class:`~ovdet.predictor.OVPredictor`: its model (with
    ``score_proposals``), its mapper (``map_image``), ``set_vocabulary`` and ``batch_size``."""

    model: torch.nn.Module
    mapper: object
    batch_size: int

    def set_vocabulary(self, names: Sequence[str]) -> None: ...


class DetectorLabeller:
    """Pseudo boxes from a detector's top-scoring candidates (module doc).

    Args:
        detector: an :class:`~ovdet.predictor.OVPredictor` (or anything with its ``model``,
            ``mapper``, ``set_vocabulary`` and ``batch_size``); its vocabulary is set, once, to
            ``vocabulary``'s names in order.
        vocabulary: the categories (their COCO ids go into the boxes) and their caption names.
        labels: what a record's labels are: ``"captions"`` (caption strings) or
            ``"pos_category_ids"`` (category ids).
        batch_size: images per detector call (default: the detector's).
    """

    def __init__(self, detector: Detector, vocabulary: NounVocabulary, labels: str = "captions",
                 batch_size: int | None = None) -> None:
        if labels not in LABEL_FIELDS:
            raise ValueError(f"labels must be one of {LABEL_FIELDS}, got {labels!r}")
        self.batch_size = detector.batch_size if batch_size is None else batch_size
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        self.detector, self.vocabulary, self.labels = detector, vocabulary, labels
        detector.set_vocabulary(vocabulary.names)
        self.row_of = {c.id: k for k, c in enumerate(vocabulary.categories)}

    def __call__(self, images: list[np.ndarray], labels: list[Sequence]) -> list[ImageResult]:
        """``images``: (H, W, 3) uint8 arrays; ``labels[b]``: image b's captions or category ids
        (``labels`` of the constructor). One :class:`ImageResult` per image: a box per labelled
        category, or the reason it got none."""
        results = [ImageResult() for _ in images]
        queries = []
        for result, image_labels in zip(results, labels):
            found, problem = self.categories(image_labels)
            queries.append(found)
            if problem:
                result.problems.append(problem)
        todo = [b for b, q in enumerate(queries) if q]
        scored = self.score([images[b] for b in todo])
        for b, candidates in zip(todo, scored):
            self._label(candidates, queries[b], results[b])
        return results

    def categories(self, labels: Sequence) -> tuple[list[int], str]:
        """The vocabulary category ids an image is labelled with (first-mention order), and a
        problem ("" when none): for captions :func:`caption_categories`; for tags the given ids,
        those outside the vocabulary reported."""
        if self.labels == "captions":
            return caption_categories(labels, self.vocabulary)
        found = [c for c in dict.fromkeys(labels) if c in self.row_of]
        unknown = [c for c in dict.fromkeys(labels) if c not in self.row_of]
        problems = [f"tag ids {unknown} are no vocabulary category"] if unknown else []
        if not found:
            problems.append("no labelled category")
        return found, "; ".join(problems)

    @torch.no_grad()
    def score(self, images: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
        """The detector's scored candidates of ``images``, in batches: per image ``{"boxes":
        (P, 4) (or per class (P, C, 4)) xyxy in original pixels, "scores": (P, C)}``."""
        scored: list[dict[str, torch.Tensor]] = []
        for start in range(0, len(images), self.batch_size):
            inputs = [self.detector.mapper.map_image(image)
                      for image in images[start:start + self.batch_size]]
            scored += self.detector.model.score_proposals(inputs)
        return scored

    def _label(self, candidates: dict[str, torch.Tensor], categories: list[int],
               result: ImageResult) -> None:
        """One box per category of ``categories``: its top-scoring candidate."""
        boxes, scores = candidates["boxes"], candidates["scores"]
        if len(scores) == 0:
            result.problems.append("no proposal")
            return
        for category_id in categories:
            row = self.row_of[category_id]
            category_boxes = boxes[:, row] if boxes.dim() == 3 else boxes
            sides = category_boxes[:, 2:] - category_boxes[:, :2]
            column = scores[:, row].float().masked_fill(~(sides >= MIN_SIDE).all(dim=1),
                                                        -float("inf"))
            best = int(column.argmax())
            if not torch.isfinite(column[best]):
                name = self.vocabulary.categories[row].name
                result.problems.append(f"no proposal with an area for '{name}'")
                continue
            result.boxes.append(PseudoBox(category_id, tuple(float(v) for v in
                                                             category_boxes[best].tolist()),
                                          float(column[best])))


def read_tag_records(path: str | Path) -> tuple[list[dict], list[dict] | None]:
    """(records ``{"id", "file_name"[, "height", "width"], "pos_category_ids"}`` in file order,
    the file's ``categories`` or None) of a tag file (module doc), checked: unique integer ids,
    string file names, integer tags; ValueError naming the file otherwise."""
    data = read_json_dataset(path, "image-labelled (pos_category_ids)",
                             {"images": ("id", "file_name")}, "tags file")
    if not any(TAGS in image for image in data["images"]):
        raise ValueError(f"no image of {path} has '{TAGS}': not an image-labelled file (its "
                         f"images list their categories' ids as \"{TAGS}\": [1, 7])")
    records = check_image_records(path, [
        {**{k: image[k] for k in IMAGE_KEYS if k in image}, TAGS: image.get(TAGS, [])}
        for image in data["images"]], TAGS)
    for record in records:
        if not all(isinstance(t, int) and not isinstance(t, bool) for t in record[TAGS]):
            raise ValueError(f"{path}: '{TAGS}' of image {record['id']} must be category ids "
                             f"(integers), got {record[TAGS]!r}")
    categories = data.get("categories")
    if categories is not None and not isinstance(categories, list):
        raise ValueError(f"{path}: 'categories' must be a list")
    return records, categories


def check_tag_vocabulary(vocabulary: NounVocabulary, records: list[dict],
                         categories: list[dict] | None, path: str | Path) -> None:
    """ValueError when a vocabulary id names another category than the tag file's (its
    ``categories``, when it has them) or when no tag of the file is a vocabulary id: the tags
    would label the wrong categories, or none."""
    names = {c.get("id"): c.get("name") for c in categories or [] if isinstance(c, dict)}
    for category in vocabulary.categories:
        theirs = names.get(category.id)
        if isinstance(theirs, str) and name_phrase(theirs) != name_phrase(category.name):
            raise ValueError(f"vocabulary category {category.id} is '{category.name}' but "
                             f"{path} calls category {category.id} '{theirs}': give a vocabulary "
                             "with the tag file's ids (default: its categories)")
    ids = {c.id for c in vocabulary.categories}
    if records and not any(t in ids for record in records for t in record[TAGS]):
        raise ValueError(f"no tag of {path} is a vocabulary category id "
                         f"({', '.join(map(str, sorted(ids)[:10]))}...)")
