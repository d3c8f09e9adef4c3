"""CLIP for ovdet: loading (open_clip names, tags, local files, ovdet's own tiny CLIPs), the ViT
trunk with kept states and dense embeddings, mask tokens (RMA) and the crop baseline, and cached
class embeddings.

Names are exported lazily, so that ``ovdet.clip.config`` (read by ``get_cfg()``) imports neither
torch nor open_clip."""
from ..utils.lazy import lazy_exports

__all__ = [
    "CLIPBundle", "CLIPViTTrunk", "DEFAULT_TEMPLATES", "MaskTokenRMA", "TrunkOutput",
    "WeightsNotFoundError", "class_embeddings", "compute_class_embeddings", "crop_embeddings",
    "encode_texts", "list_models", "load_clip", "mask_patch_masks",
]
__getattr__, __dir__ = lazy_exports(__name__, {
    "CLIPBundle": ".load", "WeightsNotFoundError": ".load", "list_models": ".load",
    "load_clip": ".load", "DEFAULT_TEMPLATES": ".text", "class_embeddings": ".text",
    "compute_class_embeddings": ".text", "encode_texts": ".text", "CLIPViTTrunk": ".vit",
    "TrunkOutput": ".vit", "MaskTokenRMA": ".rma", "mask_patch_masks": ".rma",
    "crop_embeddings": ".crops"})
