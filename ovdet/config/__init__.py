"""Configs: fvcore ``CfgNode`` with ``_BASE_`` YAML inheritance, ``KEY VALUE`` overrides, clear
errors, and ``configurable`` for modules built from a config or from keyword arguments."""
from .config import CfgNode, ConfigError, configurable
from .defaults import get_cfg

__all__ = ["CfgNode", "ConfigError", "configurable", "get_cfg"]
