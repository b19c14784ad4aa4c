"""What cluster.run checks before any actor starts, so that a run that cannot work fails at once, in a line that
says what to change, instead of in an actor's traceback minutes later.

* The run directory (cluster/run_dir.py): a new run in an empty one; ``resume=true`` with the saved config.
* Data: every row against what the reward service and the enabled scorers need (rewards/registry.py's
  ``NEEDS``), all unusable rows reported together; with ``data.on_malformed=skip`` they are listed in
  ``logs/skipped_rows.txt``. A warning gives the share of rows the enabled scorers cannot tell apart (every image
  of the row gets the same score, so the row teaches nothing), and names the scorers that would judge them.
* Weights: every enabled scorer finds its weights (the same check its server runs before loading them).
* The dashboard port of a local cluster: a busy one is swapped for a free one, and said.
* Resources (once Ray is up, before any actor): the learner ranks, rollout workers and reward replicas fit the
  cluster's CPUs and GPUs (a request that does not fit would wait forever).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cluster.config import Config
from cluster.outputs import RunOutputs
from cluster.run_dir import delete_run, prepare_run_dir
from core.ports import free_ports, port_busy
from core.prompt_file import PromptSet, load_prompts
from core.records import PromptRecord
from rewards.config import SCORER_NAMES, RewardsConfig
from rewards.registry import NEEDS, check_weights, row_problems

log = logging.getLogger("cluster")

SKIPPED_ROWS_FILE = "skipped_rows.txt"


class StartupError(ValueError):
    """The run cannot start as configured; the message says what to change."""


@dataclass
class PreparedRun:
    cfg: Config  # as it will run: output_dir absolute, a resumed run's saved config, a free dashboard port
    out: RunOutputs
    data: PromptSet
    driver_log: Path


def enabled_scorers(rewards: RewardsConfig) -> list[str]:
    return [n for n in SCORER_NAMES if getattr(rewards, n).enabled]


# ------------------------------------------------------------------------------------------------ data


def load_data(cfg: Config) -> PromptSet:
    """The run's prompts, every row checked against the enabled scorers' needs (raises core's DataError)."""
    scorers = enabled_scorers(cfg.rewards)
    return load_prompts(cfg.data.path, cfg.data.on_malformed, row_check=lambda r: row_problems(r, scorers))


def list_skipped(data: PromptSet, logs: Path) -> None:
    """data.on_malformed=skip: the rows left out, in the run's logs, and a warning that says where."""
    if not data.skipped:
        return
    listing = logs / SKIPPED_ROWS_FILE
    listing.write_text(
        f"# rows of {data.source} skipped (data.on_malformed=skip): line number, reason\n"
        + "".join(f"line {n}: {reason}\n" for n, reason in data.skipped)
    )
    log.warning("data: skipped %d unusable rows of %s (all listed in %s)", len(data.skipped), data.source, listing)


def silent_rows_warning(records: list[PromptRecord], rewards: RewardsConfig) -> Optional[str]:
    """A warning when the enabled scorers give every image of some rows the same score, naming the scorers that
    would judge those rows; None when every row is judged."""
    enabled = enabled_scorers(rewards)
    silent = [r for r in records if not any(NEEDS[n].judges(r) for n in enabled)]
    if not silent:
        return None
    by_type = Counter(r.task_type for r in silent)
    totals = Counter(r.task_type for r in records)
    types = ", ".join(f"{t} {k}/{totals[t]}" for t, k in by_type.most_common())
    others = []
    for name in sorted(SCORER_NAMES, key=lambda n: NEEDS[n].weights == "path"):  # the embedded ones first
        if name in enabled:
            continue
        judged = sum(NEEDS[name].judges(r) for r in silent)
        if judged:
            source = {"path": f"needs rewards.{name}.path", "packages": "embedded", "": "embedded"}[NEEDS[name].weights]
            others.append(f"{name} ({source}) would judge {judged}")
    what = "; ".join(f"{n}: {NEEDS[n].judges_what}" for n in enabled)
    return (
        f"data: {len(silent)} of {len(records)} rows ({len(silent) / len(records):.0%}) get the same reward "
        f"for every image from the enabled scorers ({what}), so they teach nothing; by task type: {types}. "
        f"Of them, {'; '.join(others) or 'no other scorer would judge any'} "
        f"(enable with rewards.<name>.enabled=true)"
    )


# ------------------------------------------------------------------------------------------------ config


def check_scorer_weights(rewards: RewardsConfig) -> None:
    for name in enabled_scorers(rewards):
        try:
            check_weights(name, rewards)
        except (FileNotFoundError, ModuleNotFoundError) as e:
            raise StartupError(f"rewards.{name}.enabled=true, but {e}") from None


def local_cluster(cfg: Config) -> bool:
    return not (cfg.cluster.address or os.environ.get("RAY_ADDRESS"))


def free_dashboard_port(cfg: Config) -> Optional[str]:
    """A local cluster's dashboard on a busy port would fail to start: take a free one. Returns the note."""
    host, port = cfg.cluster.host, cfg.cluster.dashboard_port
    if not local_cluster(cfg) or not port_busy(host, port):
        return None
    # the nearest free port above, as Ray does for its default one (core/ports.py: not from the ephemeral range)
    cfg.cluster.dashboard_port = free_ports(1, host, start=port + 1)[0]
    return (
        f"cluster.dashboard_port {port} is in use on {host} (another Ray cluster or run on this machine?): the "
        f"dashboard takes port {cfg.cluster.dashboard_port} instead"
    )


def resource_needs(cfg: Config) -> dict[str, dict[str, float]]:
    """What each kind of actor holds in all: {"learner": {"CPU": .., "GPU": ..}, "rollout": .., "reward <name>": ..}."""
    lc, rc = cfg.learner, cfg.rollout
    needs = {
        "learner": {"CPU": lc.ranks * lc.num_cpus_per_rank, "GPU": lc.ranks * lc.num_gpus_per_rank},
        "rollout": {"CPU": rc.workers * rc.num_cpus_per_worker, "GPU": rc.workers * rc.num_gpus_per_worker},
    }
    for name in enabled_scorers(cfg.rewards):
        s = getattr(cfg.rewards, name)
        needs[f"reward {name}"] = {"CPU": s.replicas * s.num_cpus, "GPU": s.replicas * s.num_gpus}
    return needs


def check_resources(cfg: Config, cluster: Mapping[str, float]) -> None:
    """Raise StartupError when the run's actors cannot all be placed on a cluster of ``cluster`` resources."""
    needs = resource_needs(cfg)
    for kind, key in (("CPU", "CPU"), ("GPU", "GPU")):
        total = sum(n[kind] for n in needs.values())
        have = float(cluster.get(key, 0.0))
        if total > have + 1e-9:
            parts = ", ".join(f"{who} {n[kind]:g}" for who, n in needs.items() if n[kind])
            hint = (
                "lower the shares (learner.num_cpus_per_rank, rollout.num_cpus_per_worker, "
                "rewards.<name>.num_cpus: fractions are fine) or replicas"
                if kind == "CPU"
                else "set the GPU shares to 0 on a machine without GPUs, or add GPU nodes"
            )
            more = "; or raise cluster.num_cpus" if kind == "CPU" and local_cluster(cfg) else ""
            raise StartupError(
                f"the run needs {total:g} {kind} ({parts}) but the Ray cluster has {have:g}: the "
                f"actors would wait forever; {hint}{more}"
            )


def check_cluster(cfg: Config) -> None:
    """Once Ray is up (connected or started), before any actor: do the run's actors fit?"""
    import ray

    check_resources(cfg, ray.cluster_resources())


# ------------------------------------------------------------------------------------------------ all


def attach_driver_log(path: Path) -> None:
    """The driver's log records also go to ``path`` (progress lines are on stdout)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)


def prepare(cfg: Config, config: Optional[str], overrides: list[str]) -> PreparedRun:
    """Every check that needs no Ray, before anything is written (overwrite=true deletes the previous run only
    once they pass); then the run directory and its driver log, where the notes go too. Raises StartupError,
    cluster.run_dir.RunDirError or core.prompt_file.DataError."""
    cfg, notes, replace = prepare_run_dir(cfg, config, overrides)
    check_scorer_weights(cfg.rewards)
    data = load_data(cfg)
    if replace:
        notes.append(delete_run(Path(cfg.output_dir)))
    out = RunOutputs(cfg.output_dir)
    driver_log = out.logs / "driver.log"
    attach_driver_log(driver_log)
    for note in notes:
        log.warning(note)
    list_skipped(data, out.logs)
    warning = silent_rows_warning(data.records, cfg.rewards)
    if warning:
        log.warning(warning)
    port = free_dashboard_port(cfg)
    if port:
        log.warning(port)
    return PreparedRun(cfg, out, data, driver_log)
