"""The panoptic branch: query mask proposals on the shared pyramid, classified by CLIP mask
tokens (RMA) or crops, assembled into a panoptic segmentation (exported lazily: ``config`` here
is read by ``get_cfg()``)."""
from ...utils.lazy import lazy_exports

__all__ = ["MaskCLIPPanopticHead", "MaskEnsembleScorer", "PanopticCriterion", "QueryMaskHead",
           "assemble_panoptic", "hungarian_match"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "MaskCLIPPanopticHead": ".branch", "MaskEnsembleScorer": ".scoring",
    "PanopticCriterion": ".criterion", "QueryMaskHead": ".query_head",
    "assemble_panoptic": ".assembly", "hungarian_match": ".matcher"})
