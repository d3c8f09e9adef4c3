"""ovdet's ``CfgNode``: fvcore's, with errors that name the key or file at fault.

* YAML files merge with ``_BASE_`` inheritance (fvcore); ``KEY VALUE`` lists merge as in detectron2.
* An unknown key is a :class:`ConfigError` that names it and the closest valid key; a value of the
  wrong type names the key and both types; a missing file (or ``_BASE_``) names the path; a YAML
  syntax error names the file, line and column.
* An integer given for a float option is accepted as that float (``SOLVER.BASE_LR 1``).
"""
from __future__ import annotations

import difflib
import functools
import inspect
from pathlib import Path
from typing import Any, Callable

import yaml
from fvcore.common.config import BASE_KEY
from fvcore.common.config import CfgNode as _FvcoreCfgNode


class ConfigError(ValueError):
    """A config file, key or value that cannot be used; the message says which and why."""


def yaml_error(error: yaml.YAMLError, filename: str) -> ConfigError:
    """A one-line ConfigError for a YAML syntax error: file, line, column and the problem."""
    mark = getattr(error, "problem_mark", None)
    where = f"{mark.name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else filename
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return ConfigError(f"config file {where} is not valid YAML: {problem}")


class CfgNode(_FvcoreCfgNode):
    """fvcore ``CfgNode`` with validated merges (module doc)."""

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> dict:
        """fvcore's loader; a YAML syntax error (here or in a ``_BASE_``) is a ConfigError."""
        try:
            return super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe)
        except yaml.YAMLError as error:
            raise yaml_error(error, filename) from None

    def full_keys(self, prefix: str = "") -> list[str]:
        """Every leaf key, dotted (``MODEL.CLIP.NAME``)."""
        keys = []
        for key, value in self.items():
            name = f"{prefix}{key}"
            keys.extend(value.full_keys(name + ".") if isinstance(value, CfgNode) else [name])
        return keys

    def _unknown_key(self, full_key: str) -> ConfigError:
        close = difflib.get_close_matches(full_key, self.full_keys(), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]}?" if close else ""
        return ConfigError(f"unknown config key {full_key}{hint}")

    def _checked(self, node: "CfgNode", values: dict, prefix: str) -> dict:
        """``values`` with keys checked against ``node`` and ints for floats coerced."""
        checked = {}
        for key, value in values.items():
            full_key = f"{prefix}{key}"
            if key not in node:
                if node.is_new_allowed():
                    checked[key] = value
                    continue
                raise self._unknown_key(full_key)
            original = node[key]
            if isinstance(original, CfgNode):
                if not isinstance(value, dict):
                    raise ConfigError(f"config key {full_key} is a group of options; "
                                      f"got the value {value!r}")
                value = self._checked(original, value, full_key + ".")
            elif isinstance(original, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            checked[key] = value
        return checked

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        path = Path(cfg_filename)
        if not path.is_file():
            raise ConfigError(f"config file not found: {cfg_filename}")
        try:
            loaded = self.load_yaml_with_base(str(path), allow_unsafe=allow_unsafe)
        except FileNotFoundError as error:
            raise ConfigError(f"config file not found: {error.filename or error} "
                              f"(a {BASE_KEY} of {cfg_filename})") from None
        self._merge_checked(self._checked(self, loaded, ""), source=str(cfg_filename))

    def merge_from_list(self, cfg_list: list) -> None:
        if self.is_frozen():
            raise ConfigError("the config is frozen; merge overrides before freeze() (or into "
                              "cfg.clone())")
        if len(cfg_list) % 2:
            raise ConfigError(f"overrides must be KEY VALUE pairs, got an odd number: {cfg_list}")
        pairs = list(zip(cfg_list[0::2], cfg_list[1::2]))
        for full_key, _ in pairs:
            *parents, leaf = full_key.split(".")
            node = self
            for part in parents:
                if not isinstance(node, CfgNode) or part not in node:
                    raise self._unknown_key(full_key)
                node = node[part]
            if not isinstance(node, CfgNode) or (leaf not in node and not node.is_new_allowed()):
                raise self._unknown_key(full_key)
            if isinstance(node.get(leaf), CfgNode):
                raise ConfigError(f"config key {full_key} is a group of options, not one value")
        for full_key, value in pairs:
            *parents, leaf = full_key.split(".")
            parent = self
            for part in parents:
                parent = parent[part]
            if leaf not in parent:  # a new key of a group that allows them (MODEL.LOSS_WEIGHTS)
                parent[leaf] = self._decode_cfg_value(value)
                continue
            original = parent[leaf]
            decoded = self._decode_cfg_value(value)
            if isinstance(original, float) and isinstance(decoded, int) and not isinstance(decoded, bool):
                value = str(float(decoded))
            try:
                super().merge_from_list([full_key, value])
            except ValueError as error:
                raise ConfigError(f"{error} (from the override {full_key} {value})") from None

    def _merge_checked(self, values: dict, source: str) -> None:
        try:
            self.merge_from_other_cfg(type(self)(values))
        except ValueError as error:
            raise ConfigError(f"{error} (in {source})") from None


def configurable(init: Callable) -> Callable:
    """Let ``__init__`` take either keyword arguments or a config, as in detectron2.

    ``Module(cfg, *extra, key=value)`` calls ``Module.from_config(cfg, *extra, ...)`` with the
    keywords ``from_config`` accepts; it returns the keyword arguments for ``__init__``, and the
    remaining explicit keywords override them. ``Module(a=..., b=...)`` calls ``__init__``
    directly, so tests and users build modules without any config.
    """

    @functools.wraps(init)
    def wrapped(self, *args: Any, **kwargs: Any) -> None:
        if args and isinstance(args[0], _FvcoreCfgNode):
            from_config = getattr(type(self), "from_config", None)
            if from_config is None or not inspect.ismethod(from_config):
                raise TypeError(f"{type(self).__name__} has no classmethod from_config")
            parameters = inspect.signature(from_config).parameters
            takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
            to_config = {k: v for k, v in kwargs.items() if takes_any or k in parameters}
            values = from_config(*args, **to_config)
            values.update({k: v for k, v in kwargs.items() if k not in to_config})
            init(self, **values)
        else:
            init(self, *args, **kwargs)

    return wrapped
