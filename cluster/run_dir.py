"""The run directory (``output_dir``): a new run starts in an empty one; ``resume=true`` continues the run saved
there, with the meaning it was started with.

* A new run refuses a directory that holds anything: two runs' metrics, rollouts and checkpoints would otherwise
  mix without a word. ``overwrite=true`` first deletes the previous run there (a directory with a config.yaml);
  a directory that holds no run is never deleted.
* ``resume=true`` reloads the run's saved config.yaml. The command line (and a ``--config`` file) may change only
  the fields of :data:`RESUMABLE`, which keep the run's meaning; any other difference is refused, listed.
  config.yaml is therefore never rewritten with another meaning.
* Inside a Ray job (``ray job submit --working-dir``) the working directory is Ray's temporary copy of the
  project, which ``ray stop`` deletes: a relative ``output_dir`` goes under ``~/t2i-r1-ray/`` of the node the
  driver runs on instead (cluster.run prints where).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import shutil
from enum import Enum
from pathlib import Path
from typing import Any, Optional

from cluster.config import Config, from_yaml, load_config
from core.config import ConfigError

CONFIG_FILE = "config.yaml"
JOB_OUTPUT_ROOT = "~/t2i-r1-ray"  # relative output_dirs of runs inside a Ray job go here
# The job supervisor hands the job's runtime_env (with its working_dir) to the driver in this variable.
RAY_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"

# The fields a resumed run may change, with the reason each keeps the run's meaning (fnmatch patterns of dotted
# keys). Everything else (data, seed, model, sampling, loss, optimiser, group and batch sizes, scorers and
# their rules, ...) must stay as saved: changing it mid-run would train a different run under the same name.
RESUMABLE: dict[str, str] = {
    "trainer.steps": "more (or fewer) steps continue the same run; from the checkpoint on, the learning rate "
    "decays linearly to 0 at the new last step",
    "trainer.save_every": "when checkpoints are written, not what is trained",
    "logging.*": "what is logged, not what is trained",
    "cluster.*": "where the actors run (Ray address, host, CPUs, dashboard port, object store)",
    "rewards.*.replicas": "how many servers of a scorer share the calls; each computes the same scores",
    "rewards.*.num_cpus": "the share of a node a reward replica holds",
    "rewards.*.num_gpus": "the share of a node a reward replica holds",
    "rewards.*.batch_size": "images per scorer forward inside a group: memory, not scores",
    "rewards.deadline_s": "how long the client waits for a reward call",
    "rewards.retries": "how often a failed reward call is retried on another replica",
    "rewards.max_message_mb": "the gRPC message limit",
    "rewards.token": "the reward servers' shared secret",
    "rewards.tune_allocator": "how the reward servers' memory allocator reuses memory, not what they score",
    "rollout.workers": "how many workers share a step's prompts",
    "rollout.num_cpus_per_worker": "the share of a node a rollout worker holds",
    "rollout.num_gpus_per_worker": "the share of a node a rollout worker holds",
    "rollout.cot.engine": "which engine samples the CoT (vLLM or transformers): the same model and distribution",
    "rollout.cot.vllm_*": "vLLM's memory budget",
    "rollout.image.max_batch": "images per sampler forward: memory, not the distribution",
    "rollout.image.cuda_graphs": "a CUDA speed-up of the same computation",
    "learner.num_cpus_per_rank": "the share of a node a learner rank holds",
    "learner.num_gpus_per_rank": "the share of a node a learner rank holds",
    "learner.sync_bucket_mb": "how the weights are cut up for the broadcast",
    "learner.logprob_chunk_tokens": "how many CoT tokens lm_head scores at once: memory, not the log-probs",
    "learner.sync_timeout_s": "how long a weight sync may take",
}
# Not compared at all: the flags that ask for a resume or an overwrite, and the directory (the same one, however
# it was spelt).
IGNORED = ("resume", "overwrite", "output_dir")


class RunDirError(ValueError):
    """The run directory does not fit the request; the message says what to do."""


def _reason(key: str) -> Optional[str]:
    """Why ``key`` may change on resume; None when it may not."""
    return next((why for pattern, why in RESUMABLE.items() if fnmatch.fnmatchcase(key, pattern)), None)


# ------------------------------------------------------------------------------------------------ where


def in_ray_job_copy() -> bool:
    """Whether this driver runs inside a Ray job whose working directory is Ray's temporary copy."""
    raw = os.environ.get(RAY_JOB_CONFIG_ENV)
    if not raw:
        return False
    try:
        return bool(json.loads(raw).get("runtime_env", {}).get("working_dir"))
    except (ValueError, AttributeError):
        return False


def resolve_output_dir(output_dir: str) -> tuple[Path, str]:
    """The absolute run directory, and a note when it is not where a relative path would point."""
    p = Path(output_dir).expanduser()
    if p.is_absolute() or not in_ray_job_copy():
        return p.resolve(), ""
    root = Path(JOB_OUTPUT_ROOT).expanduser()
    return (root / p).resolve(), (
        f"output_dir {output_dir!r} is relative and this is a Ray job whose working "
        f"directory is Ray's temporary copy (deleted by `ray stop`): writing under "
        f"{root} instead (pass an absolute output_dir to choose)"
    )


# ------------------------------------------------------------------------------------------------ what


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value.value if isinstance(value, Enum) else value
    return out


def differences(saved: Config, asked: Config) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (saved value, asked value) for every field that differs (IGNORED left out)."""
    a, b = _flat(saved), _flat(asked)
    return {k: (a[k], b[k]) for k in a if a[k] != b[k] and k not in IGNORED}


SECRETS = ("rewards.token",)  # never printed


def _show(key: str, value: Any) -> str:
    return "(set)" if key in SECRETS and value is not None else repr(value)


def resume_config(root: Path, config: Optional[str], overrides: list[str]) -> tuple[Config, list[str]]:
    """The config of a resumed run: the saved config.yaml with the allowed changes the command line asks for.
    Returns it and one note per change; raises RunDirError listing every refused difference."""
    saved_path = root / CONFIG_FILE
    if not saved_path.is_file():
        raise RunDirError(
            f"resume=true: {root} holds no run to resume (no {CONFIG_FILE}); start a new run there without resume=true"
        )
    try:
        saved = from_yaml(saved_path.read_text())
        # the saved run <- the command line; a --config file given again is compared as a whole
        asked = load_config(config if config is not None else str(saved_path), overrides)
    except ConfigError as e:
        raise RunDirError(f"resume=true: {e}") from None
    except ValueError as e:  # an unreadable or outdated config.yaml
        raise RunDirError(f"resume=true: cannot read {saved_path}: {e}") from None
    diffs = differences(saved, asked)
    refused = {k: v for k, v in diffs.items() if _reason(k) is None}
    if refused:
        listed = "".join(
            f"\n  {k}: {_show(k, old)} (saved) -> {_show(k, new)} (asked)" for k, (old, new) in refused.items()
        )
        raise RunDirError(
            f"resume=true: {len(refused)} field(s) differ from the run's saved {saved_path} and would change what "
            f"the run trains; drop them to continue the run, or start a new run in another output_dir:{listed}\n"
            f"(a resumed run may change only: {', '.join(RESUMABLE)})"
        )
    asked.output_dir, asked.resume, asked.overwrite = str(root), True, False
    notes = [f"resume: {k} {_show(k, old)} -> {_show(k, new)} ({_reason(k)})" for k, (old, new) in diffs.items()]
    return asked, notes


def check_new_run_dir(root: Path, overwrite: bool) -> bool:
    """A new run needs an empty directory: refuse one that holds anything, unless it holds a run and overwrite=true.
    Returns whether there is such a run to delete (:func:`delete_run`, once every other check has passed)."""
    if not root.exists():
        return False
    if not root.is_dir():
        raise RunDirError(f"output_dir {root} is a file; choose a directory")
    entries = _entries(root)
    if not entries:
        return False
    is_run = (root / CONFIG_FILE).is_file()
    if not overwrite and is_run:
        raise RunDirError(
            f"output_dir {root} already holds a run ({entries}); a new run needs an empty directory: "
            f"continue that run with resume=true, replace it with overwrite=true, or choose another "
            f"output_dir"
        )
    if not overwrite:
        raise RunDirError(
            f"output_dir {root} is not empty ({entries}) and holds no run; a new run needs an empty "
            f"directory: choose another output_dir"
        )
    if not is_run:
        raise RunDirError(
            f"overwrite=true: output_dir {root} holds no run (no {CONFIG_FILE}) but other files "
            f"({entries}); not deleting them: choose another output_dir"
        )
    return True


def _entries(root: Path) -> str:
    names = sorted(p.name for p in root.iterdir())
    return ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")


def delete_run(root: Path) -> str:
    """overwrite=true: delete the run in ``root`` (checked by :func:`check_new_run_dir`). Returns the note."""
    entries = _entries(root)
    for p in root.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    return f"overwrite=true: deleted the previous run in {root} ({entries})"


def prepare_run_dir(cfg: Config, config: Optional[str], overrides: list[str]) -> tuple[Config, list[str], bool]:
    """The run's config, with output_dir absolute, if the directory fits the request (see the module docstring);
    the notes to print; and whether a previous run is to be deleted first (overwrite=true). Deletes nothing.
    Raises RunDirError."""
    if cfg.resume and cfg.overwrite:
        raise RunDirError(
            "resume=true and overwrite=true contradict each other: resume continues the run in "
            "output_dir, overwrite deletes it"
        )
    root, where = resolve_output_dir(cfg.output_dir)
    notes = [where] if where else []
    if cfg.resume:
        cfg, changes = resume_config(root, config, overrides)
        return cfg, notes + changes, False
    replace = check_new_run_dir(root, cfg.overwrite)
    cfg.output_dir = str(root)
    return cfg, notes, replace
