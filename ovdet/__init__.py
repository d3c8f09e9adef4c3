"""ovdet: open-vocabulary object detection and panoptic segmentation on one shared ViT-CLIP backbone."""
__version__ = "0.1.0"
