"""Pseudo boxes from captions (PB-OVD with the shared CLIP): caption noun matching, activation
maps, box-free or proposal candidates, PB-OVD and RMA scoring, sharded resumable generation."""
from .captions import group_coco_captions, read_caption_records
from .generator import ImageResult, PseudoBox, PseudoBoxGenerator, PseudoBoxOptions
from .maps import ActivationMaps, normalize_maps
from .runner import generate_pseudo_boxes
from .vocabulary import NounVocabulary

__all__ = [
    "ActivationMaps", "ImageResult", "NounVocabulary", "PseudoBox", "PseudoBoxGenerator",
    "PseudoBoxOptions", "generate_pseudo_boxes", "group_coco_captions", "normalize_maps",
    "read_caption_records",
]
