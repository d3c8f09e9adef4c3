"""ovdet: open-vocabulary object detection and panoptic segmentation on one shared ViT-CLIP backbone."""
__version__ = "0.1.0"


def __getattr__(name: str):
    """``ovdet.OVPredictor`` without importing the whole model stack on ``import ovdet``."""
    if name == "OVPredictor":
        from .predictor import OVPredictor

        return OVPredictor
    raise AttributeError(f"module 'ovdet' has no attribute {name!r}")
