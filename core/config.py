"""How a typed config tree is loaded and checked, for any root dataclass (OmegaConf structured configs).

Each package owns its config section beside its code (policy/config.py, rollout/config.py, ...); an application
composes the sections into a root dataclass (cluster/config.py's ``Config``) and loads it here:
defaults <- a preset or YAML file <- ``key=value`` overrides, then every section's ``validate``. Unknown keys
(with a "did you mean"), wrong types, values outside an enum's choices and a section's own checks are all
reported as :class:`ConfigError` naming the full key.

A command-line tool of a stage loads a root of only the sections it uses (``partial=True``): it accepts the full
tree (a preset, a run's config.yaml) and ignores the other top-level sections.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    OmegaConfBaseException,
    ValidationError,
)

T = TypeVar("T")

# The presets are data, not code: every command line accepts them by name, whichever package it belongs to.
PRESET_DIR = Path(__file__).resolve().parents[1] / "cluster" / "configs"


def _required(*_: Any) -> Any:
    # Presets mark values the user must supply as ${required:}; an override replaces the interpolation, and an
    # unreplaced one fails here when the config is resolved. (OmegaConf's own "???" does not survive a merge
    # onto a dataclass default.)
    raise ValueError("${required:}")


OmegaConf.register_resolver("required", _required, replace=True, annotation_validation="off")


class ConfigError(ValueError):
    """A config value is wrong. The message names the full key and says how to fix it."""


class _FieldError(ValueError):
    """Raised by a section's ``validate``; :func:`validate_tree` prefixes the section's path."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def require(condition: bool, key: str, message: str) -> None:
    """Inside a section's ``validate``: fail with ``message`` for field ``key`` unless ``condition``."""
    if not condition:
        raise _FieldError(key, message)


def validate_tree(node: Any, path: str = "") -> None:
    """Run every section's ``validate`` (depth first), reporting errors with the full key."""
    for f in dataclasses.fields(node):
        child = getattr(node, f.name)
        if dataclasses.is_dataclass(child):
            validate_tree(child, f"{path}{f.name}.")
    if hasattr(node, "validate"):
        try:
            node.validate()
        except _FieldError as e:
            raise ConfigError(f"{path}{e.key}: {e}") from None


def preset_path(name_or_path: str) -> Path:
    """A preset name (``tiny``, ``janus-pro-7b``) or a YAML file path."""
    p = Path(os.path.expanduser(name_or_path))
    if p.is_file():
        return p
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = sorted(f.stem for f in PRESET_DIR.glob("*.yaml"))
    raise ConfigError(f"--config {name_or_path!r}: no such file and no such preset (presets: {', '.join(names)})")


def _keys_at(node: Any, path: list[str]) -> list[str]:
    for part in path:
        node = node.get(part) if isinstance(node, DictConfig) else None
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _explain(err: OmegaConfBaseException, base: DictConfig, source: str) -> ConfigError:
    key = err.full_key or ""
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        parts = key.split(".")
        known = _keys_at(base, parts[:-1])
        hint = difflib.get_close_matches(parts[-1], known, n=1)
        where = ".".join(parts[:-1]) or "the top level"
        msg = f"unknown key {key!r} in {source}"
        msg += (
            f"; did you mean {'.'.join(parts[:-1] + [hint[0]])!r}?"
            if hint
            else f" (keys at {where}: {', '.join(known)})"
        )
        return ConfigError(msg)
    if isinstance(err, ValidationError):
        return ConfigError(f"{key}: {err.msg.splitlines()[0]} (from {source})")
    if isinstance(err, InterpolationResolutionError) and "${required:}" in str(err):
        return ConfigError(f"{key} is required by the preset but not set; pass {key}=... on the command line")
    return ConfigError(f"{key}: {err} (from {source})")


def merge_config(
    root: type[T], config: Optional[str] = None, overrides: Optional[list[str]] = None, *, partial: bool = False
) -> DictConfig:
    """The unresolved tree: ``root``'s defaults <- preset/YAML file <- ``key=value`` overrides. ``partial``: drop
    the file's top-level sections that ``root`` does not have (overrides must still name ``root``'s keys)."""
    base = OmegaConf.structured(root)
    merged = base
    if config is not None:
        path = preset_path(config)
        loaded = OmegaConf.load(path)
        if partial and isinstance(loaded, DictConfig):
            loaded = OmegaConf.masked_copy(loaded, [k for k in loaded.keys() if k in base])
        try:
            merged = OmegaConf.merge(merged, loaded)
        except OmegaConfBaseException as e:
            raise _explain(e, base, str(path)) from None
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value; got {bad[0]!r}")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        except OmegaConfBaseException as e:
            raise _explain(e, base, "the command line") from None
    return merged


def load_config(
    root: type[T], config: Optional[str] = None, overrides: Optional[list[str]] = None, *, partial: bool = False
) -> T:
    """:func:`merge_config`, resolved into ``root`` objects and validated. Raises ConfigError."""
    merged = merge_config(root, config, overrides, partial=partial)
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise _explain(e, OmegaConf.structured(root), "the config") from None
    validate_tree(cfg)
    return cfg


def load_cli_config(root: type[T], config: Optional[str], overrides: list[str], *, partial: bool = False) -> T:
    """load_config for a command-line entry point: sets up logging; a bad config ends the process with the
    error on stderr and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return load_config(root, config, overrides, partial=partial)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(root: type[T], text: str) -> T:
    """Inverse of :func:`to_yaml` (used to hand the resolved config to Ray actors and on resume)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(root), OmegaConf.create(text)))
