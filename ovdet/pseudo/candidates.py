"""Box-free candidate boxes: the connected regions of an activation map at several thresholds."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy import ndimage


def component_boxes(activation: torch.Tensor, thresholds: Sequence[float]) -> torch.Tensor:
    """(H, W) map in [0, 1] -> (R, 4) float xyxy boxes (pixel edges, so a one-pixel region at
    (x, y) is (x, y, x + 1, y + 1)) of the 8-connected regions where the map is >= each
    threshold; duplicates across thresholds removed. No region: (0, 4)."""
    values = activation.detach().cpu().numpy()
    structure = np.ones((3, 3), dtype=bool)
    boxes: list[tuple[int, int, int, int]] = []
    for threshold in thresholds:
        labels, _ = ndimage.label(values >= threshold, structure=structure)
        for rows, cols in ndimage.find_objects(labels):
            box = (cols.start, rows.start, cols.stop, rows.stop)
            if box not in boxes:
                boxes.append(box)
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
