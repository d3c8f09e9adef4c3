"""RoI heads."""
from .open_vocab_heads import CosineClassifier, OpenVocabROIHeads

__all__ = ["CosineClassifier", "OpenVocabROIHeads"]
