"""Backbones on the shared CLIP trunk (exported lazily: ``config`` here is read by
``get_cfg()``)."""
from ...utils.lazy import lazy_exports

__all__ = ["CLIPViTSimpleFPN"]
__getattr__, __dir__ = lazy_exports(__name__, {"CLIPViTSimpleFPN": ".clip_vit_fpn"})
