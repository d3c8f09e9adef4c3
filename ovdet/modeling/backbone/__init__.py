"""Backbones on the shared CLIP trunk."""
from .clip_vit import CLIPViTBackbone

__all__ = ["CLIPViTBackbone"]
