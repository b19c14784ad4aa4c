"""The policies an evaluation compares (``eval.policies``), each resolved to the HF-format Janus directory its
rollout workers load, a folder name and a fingerprint of its weights (so that a resumed evaluation never mixes the
images of two different policies in one folder).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from policy.config import RUN_EXPORT, ModelConfig, find_model_dir
from policy.model import resolve_model_dir

MODEL = "model"  # the entry that means model.path (unset: the initial tiny Janus)
TRAINER_STATE = "trainer_state.json"  # written by cluster.run beside its checkpoints: the last step's policy version
_SAMPLE = 4 << 20  # bytes hashed at each end of a weight file


class PolicyError(ValueError):
    """Two policies would share a folder; the message says how to tell them apart."""


@dataclass
class PolicyUnderTest:
    label: str  # its folder under eval.output_dir and its row in the report
    source: str  # as given in eval.policies
    model: ModelConfig  # what the rollout workers load
    model_dir: Path  # the HF-format directory the weights come from
    version: Optional[int]  # the policy version of a training run's export (its steps), when known

    def describe(self) -> str:
        version = f", policy version {self.version}" if self.version is not None else ""
        return f"{self.model_dir}{version}"

    def identity(self) -> dict:
        """What must not change under a folder's images: the weights (wherever the directory now lives)."""
        return {"weights": weights_fingerprint(self.model_dir)}


def weights_fingerprint(model_dir: Path) -> str:
    """sha1 over every weight file's name, size and first and last 4 MiB: changes when the weights do (a new export,
    another checkpoint), without reading gigabytes."""
    h = hashlib.sha1()
    files = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
    for f in files:
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                fh.seek(size - _SAMPLE)
                h.update(fh.read(_SAMPLE))
    return h.hexdigest()


def _run_version(model_dir: Path) -> Optional[int]:
    """A run's export sits in {output_dir}/checkpoints/hf beside the run's trainer_state.json."""
    state = model_dir.parent / TRAINER_STATE
    if model_dir.parts[-2:] == RUN_EXPORT.parts and state.is_file():
        return int(json.loads(state.read_text())["version"])
    return None


def _label(source: str, model_cfg: ModelConfig, model_dir: Path) -> str:
    if source == MODEL:
        return "initial" if model_cfg.path is None else model_dir.name
    if model_dir.parts[-2:] == RUN_EXPORT.parts:
        return model_dir.parents[1].name  # the run's output_dir
    return model_dir.name


def resolve_policies(entries: list[str], model_cfg: ModelConfig) -> list[PolicyUnderTest]:
    """``entries``: ``model`` or a run's output_dir / HF export / HF Janus directory. Raises ConfigError for a
    directory that is none of these, PolicyError when two would share a folder name."""
    out = []
    for source in entries:
        cfg = copy.deepcopy(model_cfg)
        if source != MODEL:
            cfg.path = str(find_model_dir(source))
        model_dir = resolve_model_dir(cfg).resolve()
        label = _label(source, model_cfg, model_dir)
        out.append(PolicyUnderTest(label, source, cfg, model_dir, _run_version(model_dir)))
    labels = [p.label for p in out]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise PolicyError(
            f"eval.policies {entries}: more than one policy would be written to the folder(s) {twice} "
            "(named after the run or directory); evaluate them into separate eval.output_dir folders"
        )
    return out
