"""RoI heads and mask heads (exported lazily: ``config`` here is read by ``get_cfg()``)."""
from ...utils.lazy import lazy_exports

__all__ = ["CosineClassifier", "MaskRCNNConvUpsampleHead", "OpenVocabROIHeads"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "CosineClassifier": ".open_vocab_heads", "OpenVocabROIHeads": ".open_vocab_heads",
    "MaskRCNNConvUpsampleHead": ".mask_head"})
