"""Learner checkpoints (resume training exactly) and the export of the trained policy as an HF directory.

- :func:`save_checkpoint` / :func:`load_checkpoint`: DeepSpeed's own checkpointing (model, optimizer and
  scheduler state, step counters; ZeRO shards per rank) under ``<dir>/step_<version>/``, plus each rank's RNG
  states (torch, CUDA, numpy, random) next to it. Every rank calls them; resume needs the same number of ranks
  and ZeRO stage as the save (DeepSpeed's rule for sharded optimizer state).
- :func:`export_hf`: the full policy (frozen parts included) as safetensors + config + generation config +
  tokenizer, loadable with ``JanusForConditionalGeneration.from_pretrained``; usable as ``model.path``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from learner.engine import PolicyTrainer

MODULE_PREFIX = "policy."  # learner.logprobs.PolicyLogProbs holds the Janus model as `.policy`


def _tag(version: int) -> str:
    return f"step_{version}"


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(trainer: PolicyTrainer, directory: str | Path) -> Path:
    """Every rank: save under ``directory/step_<version>`` (and point ``directory/latest`` at it)."""
    directory = Path(directory)
    tag = _tag(trainer.version)
    client_state = {
        "version": trainer.version,
        "world_size": trainer.world_size,
        "zero_stage": trainer.setup.learner.zero_stage,
    }
    trainer.engine.save_checkpoint(str(directory), tag=tag, client_state=client_state)
    torch.save(_rng_state(), directory / tag / f"rng_rank{trainer.rank}.pt")
    torch.distributed.barrier()
    return directory / tag


def load_checkpoint(trainer: PolicyTrainer, directory: str | Path, tag: Optional[str] = None) -> int:
    """Every rank, on a freshly built trainer: restore the checkpoint ``tag`` (default: the latest); returns
    the restored version."""
    directory = Path(directory)
    if tag is None:
        latest = directory / "latest"
        if not latest.is_file():
            raise FileNotFoundError(
                f"no checkpoint in {directory} (no 'latest' file); pass a tag or a directory written by save_checkpoint"
            )
        tag = latest.read_text().strip()
    rng = directory / tag / f"rng_rank{trainer.rank}.pt"
    if not rng.is_file():
        raise FileNotFoundError(
            f"{rng} missing: the checkpoint was written by fewer ranks than learner.ranks="
            f"{trainer.world_size}; resume with the same number of ranks"
        )
    path, client_state = trainer.engine.load_checkpoint(str(directory), tag=tag)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint {directory / tag}")
    if client_state.get("version") != trainer.version:
        raise RuntimeError(
            f"checkpoint {tag} holds version {client_state.get('version')} but the engine resumed "
            f"at step {trainer.version}"
        )
    _set_rng_state(torch.load(rng, weights_only=False))
    return trainer.version


def full_state_dict(trainer: PolicyTrainer) -> Optional[dict[str, torch.Tensor]]:
    """Every rank: the complete Janus state dict on CPU on rank 0 (None elsewhere), ZeRO-3 shards gathered."""
    if trainer.setup.learner.zero_stage == 3:
        state = trainer.engine._zero3_consolidated_16bit_state_dict()
    else:
        state = trainer.engine.module.state_dict() if trainer.rank == 0 else None
    if state is None:
        return None
    return {
        k[len(MODULE_PREFIX) :]: v.detach().cpu().contiguous() for k, v in state.items() if k.startswith(MODULE_PREFIX)
    }


def export_hf(trainer: PolicyTrainer, directory: str | Path) -> Optional[Path]:
    """Every rank: write the trained policy as an HF-format Janus directory (rank 0 writes; returns its path
    there, None on other ranks)."""
    state = full_state_dict(trainer)
    out = None
    if trainer.rank == 0:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(out, state_dict=state, safe_serialization=True)
        trainer.policy.tokenizer.save_pretrained(out)
    torch.distributed.barrier()
    return out
