"""What the benchmarks that time whole `python -m cluster.run` processes share: the command line and environment
of a run on a Ray cluster of its own (a free dashboard port, loopback only, no inherited RAY_ADDRESS)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core.ports import free_ports

REPO = Path(__file__).resolve().parents[1]


def cluster_run_command(output_dir: str | os.PathLike, overrides: list[str]) -> list[str]:
    """`python -m cluster.run` into ``output_dir`` with its dashboard on a free port, then ``overrides``."""
    return [
        sys.executable,
        "-m",
        "cluster.run",
        f"output_dir={output_dir}",
        f"cluster.dashboard_port={free_ports(1)[0]}",
        *overrides,
    ]


def cluster_run_env() -> dict[str, str]:
    """This process's environment for the run: the repo importable, sockets on loopback, and a local cluster of
    its own (as `make run` starts) even where RAY_ADDRESS points at another."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    return env
