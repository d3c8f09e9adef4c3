"""ovdet: open-vocabulary object detection and panoptic segmentation on one shared ViT-CLIP backbone.

Main entry points (loaded on first use, so ``import ovdet`` stays light):

* ``get_cfg()``: the default config (fvcore ``CfgNode``); ``merge_from_file`` /
  ``merge_from_list`` with errors that name the key or file.
* ``build_model(cfg)``: the detector a config describes (``ovdet.modeling.registry``).
* ``OVPredictor(cfg, weights)``: batched inference; ``set_vocabulary([...names])`` swaps the
  vocabulary, ``predictor(images)`` returns boxes, scores, labels and masks per image.
* ``register_coco_instances(name, json_file, image_root, novel=[...], keep="all" | "base")``:
  a user's COCO-format dataset, by name; ``DatasetCatalog`` lists and loads named datasets.
* ``load_clip(name, pretrained)``: an open_clip model with its tokenizer and preprocessing
  (``"toyworld"`` is the tiny CLIP shipped with ovdet).

Command lines: ``tools/train_net.py`` (train and evaluate), ``tools/demo.py`` (detect any
vocabulary in images), ``tools/generate_pseudo_boxes.py`` (pseudo boxes from captions).
"""
from __future__ import annotations

from .utils.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "OVPredictor": "ovdet.predictor",
    "get_cfg": "ovdet.config",
    "build_model": "ovdet.modeling.registry",
    "register_coco_instances": "ovdet.data",
    "DatasetCatalog": "ovdet.data",
    "load_clip": "ovdet.clip",
}
__all__ = sorted(_LAZY)
__getattr__, _dir_lazy = lazy_exports(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted({*globals(), *_dir_lazy()})
