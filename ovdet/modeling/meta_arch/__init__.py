"""Meta-architectures."""
from .ov_rcnn import OpenVocabRCNN

__all__ = ["OpenVocabRCNN"]
