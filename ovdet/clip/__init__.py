"""CLIP for ovdet: loading (open_clip names, tags, local files, ovdet's own tiny CLIPs), the ViT
trunk with kept states and dense embeddings, and cached class embeddings."""
from .load import CLIPBundle, WeightsNotFoundError, list_models, load_clip
from .text import DEFAULT_TEMPLATES, class_embeddings, compute_class_embeddings, encode_texts
from .vit import CLIPViTTrunk, TrunkOutput

__all__ = [
    "CLIPBundle", "CLIPViTTrunk", "DEFAULT_TEMPLATES", "TrunkOutput", "WeightsNotFoundError",
    "class_embeddings", "compute_class_embeddings", "encode_texts", "list_models", "load_clip",
]
