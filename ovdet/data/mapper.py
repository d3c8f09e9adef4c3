"""Dataset dict -> model input, with torchvision ``transforms.v2`` keeping boxes and masks in step.

Model input (one image)::

    {"image": uint8 (3, H, W) after resizing, "height": int, "width": int (original size),
     "image_id": int, "file_name": str,
     "instances": {"boxes": float (N, 4) xyxy in resized pixels, "classes": int64 (N,),
                   "masks": bool (N, H, W),          # when with_masks
                   "image_labelled": bool (),        # "instances" only when training
                   "pseudo_boxes": float (M, 4), "pseudo_classes": int64 (M,),
                   "pseudo_scores": float (M,)},     # of a record with "pseudo_annotations"
     "panoptic": {"masks": bool (S, H, W), "classes": int64 (S,) index into
                  metadata.panoptic_classes, "void": bool (H, W)}}
                                                     # only when training on a panoptic record

``"image_labelled"`` (a 0-dim bool tensor, in every training input) is True for a record marked
``"image_labelled": True``: one of a dataset of ``DATASETS.IMAGE_LABELLED``, whose boxes are pseudo
boxes made from image-level labels (the trainer marks them). The RoI heads then train on its boxes
as positives only and without a mask loss; the ``"masks"`` of such an instances record are all
False (no mask target is meaningful: its segmentations are not read), kept only so that every
input has the same keys and shapes.

The ``"pseudo_annotations"`` of a record (caption pseudo boxes of objects no human labelled in it,
:mod:`ovdet.data.unlabelled`) are transformed with the image into ``"pseudo_boxes"``,
``"pseudo_classes"`` and ``"pseudo_scores"``; a record without that key has none of them.

Training drops crowd annotations and boxes that augmentation leaves empty; images whose file
cannot be read raise :class:`~ovdet.data.image_io.ImageReadError` (callers log and skip them).

A panoptic record (one with ``"pan_seg_file_name"``, :mod:`ovdet.data.panoptic`) is trained from
its PNG: one mask per non-crowd segment of ``segments_info``, transformed with the image (nearest
neighbour, so masks stay disjoint). ``"void"`` is True exactly where no mask is: ids missing from
``segments_info`` (novel things of a base-only set), crowd segments, segments that augmentation
leaves empty (dropped), and padding. Its ``"instances"`` are its thing segments: boxes from the
transformed masks, ``classes`` the thing index (things come first in ``panoptic_classes``),
``masks`` when ``with_masks``. A PNG whose size differs from the image's is a ``ValueError``.
"""
from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..config import CfgNode, configurable
from .catalog import BoxMode
from .image_io import read_image
from .panoptic import read_panoptic_png


def decode_segmentation(segmentation, height: int, width: int) -> np.ndarray:
    """COCO polygons, uncompressed or compressed RLE -> (height, width) bool mask."""
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(bool)


def box_to_xyxy(bbox: list[float], mode: BoxMode) -> list[float]:
    x, y, a, b = bbox
    return [x, y, x + a, y + b] if mode == BoxMode.XYWH_ABS else [x, y, a, b]


class DatasetMapper:
    """Reads the image, applies the transforms, builds the model input (module doc).

    Args:
        is_train: training (random flip, optional scale jitter, targets) or inference (resize).
        min_size: length of the shorter image side after resizing...
        max_size: ...unless that makes the longer side exceed this cap (detectron2's
            ResizeShortestEdge).
        flip: probability of a horizontal flip when training.
        scale_jitter: ``(low, high)`` large-scale-jitter range around ``min_size`` when training
            (then a random crop back to at most ``min_size`` x ``max_size``); ``None`` disables it.
        with_masks: decode segmentations into instance masks (panoptic targets are built for
            every panoptic record when training, whatever this says).
    """

    @configurable
    def __init__(self, *, is_train: bool, min_size: int, max_size: int, flip: float = 0.5,
                 scale_jitter: tuple[float, float] | None = None, with_masks: bool = True) -> None:
        self.is_train = is_train
        self.with_masks = with_masks
        steps: list = []
        if is_train and scale_jitter is not None:
            steps += [v2.ScaleJitter((min_size, min_size), scale_range=tuple(scale_jitter)),
                      v2.RandomCrop((min_size, min_size), pad_if_needed=True)]
        elif max_size > min_size:
            steps.append(v2.Resize(min_size, max_size=max_size))
        else:  # the cap binds for every shape: scale the longer side to max_size
            steps.append(v2.Resize(size=None, max_size=max_size))
        if is_train and flip > 0:
            steps.append(v2.RandomHorizontalFlip(flip))
        if is_train:
            steps.append(v2.ClampBoundingBoxes())
        self.transforms = v2.Compose(steps)

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool) -> dict:
        jitter = tuple(cfg.INPUT.SCALE_JITTER) if cfg.INPUT.SCALE_JITTER else None
        return {"is_train": is_train, "min_size": cfg.INPUT.MIN_SIZE, "max_size": cfg.INPUT.MAX_SIZE,
                "flip": cfg.INPUT.FLIP_PROB, "scale_jitter": jitter,
                "with_masks": cfg.MODEL.MASK_ON}

    def map_image(self, image: np.ndarray, **info) -> dict:
        """An (H, W, 3) uint8 RGB array -> inference input (resized), with ``info`` copied in."""
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        return {"image": self.transforms(tensor), "height": tensor.shape[1],
                "width": tensor.shape[2], **info}

    def __call__(self, record: dict) -> dict:
        array = read_image(record["file_name"])
        height, width = array.shape[:2]
        if (height, width) != (record["height"], record["width"]):
            raise ValueError(f"{record['file_name']}: image is {width}x{height} but its "
                             f"annotation says {record['width']}x{record['height']}")
        if not self.is_train:
            return self.map_image(array, image_id=record["image_id"], file_name=record["file_name"])
        image = torch.from_numpy(array).permute(2, 0, 1)
        output = {"height": height, "width": width, "image_id": record["image_id"],
                  "file_name": record["file_name"]}
        if "pan_seg_file_name" in record:
            return self._map_panoptic(record, image, output)
        annotations = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        classes = torch.tensor([a["category_id"] for a in annotations], dtype=torch.int64)
        sample = {"image": tv_tensors.Image(image), "classes": classes,
                  "boxes": _bounding_boxes(annotations, height, width)}
        unlabelled = record.get("pseudo_annotations")
        if unlabelled is not None:
            sample["pseudo_boxes"] = _bounding_boxes(unlabelled, height, width)
        image_labelled = bool(record.get("image_labelled", False))
        if self.with_masks and not image_labelled:
            masks = [decode_segmentation(a["segmentation"], height, width) if "segmentation" in a
                     else _box_mask(a, height, width) for a in annotations]
            sample["masks"] = tv_tensors.Mask(torch.from_numpy(
                np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)))
        sample = self.transforms(sample)
        boxes = sample["boxes"].as_subclass(torch.Tensor)
        keep = _non_empty(boxes)
        instances = {"boxes": boxes[keep], "classes": sample["classes"][keep]}
        output["image"] = sample["image"].as_subclass(torch.Tensor)
        if self.with_masks and image_labelled:
            instances["masks"] = torch.zeros(int(keep.sum()), *output["image"].shape[1:],
                                             dtype=torch.bool)
        elif self.with_masks:
            instances["masks"] = sample["masks"].as_subclass(torch.Tensor)[keep].bool()
        instances["image_labelled"] = torch.tensor(image_labelled)
        if unlabelled is not None:
            instances.update(_pseudo_instances(sample["pseudo_boxes"], unlabelled))
        output["instances"] = instances
        return output

    def _map_panoptic(self, record: dict, image: torch.Tensor, output: dict) -> dict:
        """Training input of a panoptic record (module doc)."""
        height, width = image.shape[1:]
        ids = read_panoptic_png(record["pan_seg_file_name"])
        if ids.shape != (height, width):
            raise ValueError(f"{record['pan_seg_file_name']}: panoptic PNG is {ids.shape[1]}x"
                             f"{ids.shape[0]} but its image is {width}x{height}")
        segments = [s for s in record["segments_info"] if not s.get("iscrowd", 0)]
        # one label map (0 = void, k + 1 = segment k) goes through the transforms, not S masks
        lookup = {s["id"]: k + 1 for k, s in enumerate(segments)}
        unique, inverse = np.unique(ids, return_inverse=True)
        labels = np.array([lookup.get(int(i), 0) for i in unique], dtype=np.int64)[inverse]
        sample = self.transforms({"image": tv_tensors.Image(image), "labels": tv_tensors.Mask(
            torch.from_numpy(labels.reshape(1, height, width)))})
        labels = sample["labels"].as_subclass(torch.Tensor)[0]
        masks = labels[None] == torch.arange(1, len(segments) + 1)[:, None, None]
        keep = masks.flatten(1).any(1)
        classes = torch.tensor([s["category_id"] for s in segments], dtype=torch.int64)
        is_thing = torch.tensor([bool(s["isthing"]) for s in segments], dtype=torch.bool)
        masks, classes, is_thing = masks[keep], classes[keep], is_thing[keep]
        output["image"] = sample["image"].as_subclass(torch.Tensor)
        output["panoptic"] = {"masks": masks, "classes": classes, "void": ~masks.any(0)}
        instances = {"boxes": _mask_boxes(masks[is_thing]), "classes": classes[is_thing]}
        if self.with_masks:
            instances["masks"] = masks[is_thing]
        instances["image_labelled"] = torch.tensor(bool(record.get("image_labelled", False)))
        output["instances"] = instances
        return output


def _bounding_boxes(annotations: list[dict], height: int, width: int) -> tv_tensors.BoundingBoxes:
    """The annotations' boxes as (N, 4) xyxy ``BoundingBoxes`` on a (height, width) canvas."""
    return tv_tensors.BoundingBoxes(
        torch.tensor([box_to_xyxy(a["bbox"], a["bbox_mode"]) for a in annotations],
                     dtype=torch.float32).reshape(-1, 4),
        format="XYXY", canvas_size=(height, width))


def _non_empty(boxes: torch.Tensor) -> torch.Tensor:
    """(N,) bool: boxes (N, 4) xyxy at least one pixel wide and high (augmentation may leave a
    box empty)."""
    return ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)


def _pseudo_instances(boxes: tv_tensors.BoundingBoxes, annotations: list[dict]
                      ) -> dict[str, torch.Tensor]:
    """Transformed pseudo boxes (M, 4) and their annotations -> ``{"pseudo_boxes": (M', 4),
    "pseudo_classes": (M',) int64, "pseudo_scores": (M',) float}``, boxes that the augmentation
    left empty dropped."""
    boxes = boxes.as_subclass(torch.Tensor)
    keep = _non_empty(boxes)
    classes = torch.tensor([a["category_id"] for a in annotations], dtype=torch.int64)
    scores = torch.tensor([a["pseudo_score"] for a in annotations], dtype=torch.float32)
    return {"pseudo_boxes": boxes[keep], "pseudo_classes": classes[keep],
            "pseudo_scores": scores[keep]}


def _mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool non-empty masks -> (N, 4) float xyxy boxes enclosing their pixels (a pixel
    (x, y) spans [x, x + 1] x [y, y + 1], as COCO's mask boxes)."""
    height, width = masks.shape[1:]
    rows, cols = masks.any(2), masks.any(1)  # (N, H), (N, W)
    y1 = rows.int().argmax(1)
    y2 = height - rows.flip(1).int().argmax(1)
    x1 = cols.int().argmax(1)
    x2 = width - cols.flip(1).int().argmax(1)
    return torch.stack([x1, y1, x2, y2], 1).float()


def _box_mask(annotation: dict, height: int, width: int) -> np.ndarray:
    """A box-shaped mask for an annotation without a segmentation."""
    x1, y1, x2, y2 = (int(round(v)) for v in box_to_xyxy(annotation["bbox"], annotation["bbox_mode"]))
    mask = np.zeros((height, width), dtype=bool)
    mask[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = True
    return mask
