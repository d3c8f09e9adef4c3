"""Proposal generators."""
from .rpn import RPN

__all__ = ["RPN"]
