"""Backbones on the shared CLIP trunk."""
from .clip_vit_fpn import CLIPViTSimpleFPN

__all__ = ["CLIPViTSimpleFPN"]
