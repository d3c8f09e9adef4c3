"""CLIP for ovdet: loading (open_clip names, tags, local files, ovdet's own tiny CLIPs), the ViT
trunk with kept states and dense embeddings, and cached class embeddings.

Names are exported lazily, so that ``ovdet.clip.config`` (read by ``get_cfg()``) imports neither
torch nor open_clip."""
from ..utils.lazy import lazy_exports

__all__ = [
    "CLIPBundle", "CLIPViTTrunk", "DEFAULT_TEMPLATES", "TrunkOutput", "WeightsNotFoundError",
    "class_embeddings", "compute_class_embeddings", "encode_texts", "list_models", "load_clip",
]
__getattr__, __dir__ = lazy_exports(__name__, {
    "CLIPBundle": ".load", "WeightsNotFoundError": ".load", "list_models": ".load",
    "load_clip": ".load", "DEFAULT_TEMPLATES": ".text", "class_embeddings": ".text",
    "compute_class_embeddings": ".text", "encode_texts": ".text", "CLIPViTTrunk": ".vit",
    "TrunkOutput": ".vit"})
