"""Proposal generators (exported lazily: ``config`` here is read by ``get_cfg()``)."""
from ...utils.lazy import lazy_exports

__all__ = ["RPN"]
__getattr__, __dir__ = lazy_exports(__name__, {"RPN": ".rpn"})
