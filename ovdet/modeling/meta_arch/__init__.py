"""Meta-architectures (exported lazily: ``config`` here is read by ``get_cfg()``)."""
from ...utils.lazy import lazy_exports

__all__ = ["OpenVocabRCNN"]
__getattr__, __dir__ = lazy_exports(__name__, {"OpenVocabRCNN": ".ov_rcnn"})
