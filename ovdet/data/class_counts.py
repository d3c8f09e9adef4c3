"""How many images of a dataset hold each class (the federated loss's sampling weights)."""
from __future__ import annotations

import numpy as np


def class_image_counts(records: list[dict], num_classes: int) -> list[int]:
    """``counts[c]``: the number of dataset dicts with at least one annotation (or pseudo
    annotation of an unlabelled object, :mod:`ovdet.data.unlabelled`) of contiguous class ``c``
    (LVIS's ``image_count`` when ``records`` is the LVIS training set)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for record in records:
        classes = {a["category_id"] for key in ("annotations", "pseudo_annotations")
                   for a in record.get(key, ())}
        for c in classes:
            if not 0 <= c < num_classes:
                raise ValueError(f"{record.get('file_name', 'a record')} has category_id {c}, "
                                 f"outside the {num_classes} classes")
            counts[c] += 1
    return counts.tolist()
