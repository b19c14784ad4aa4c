"""The process environment every Ray worker of this project needs (models from local paths only, vLLM inside the
actor's own process), shared by the applications that start or join Ray (cluster/, evaluation/)."""

from __future__ import annotations

import os
from pathlib import Path

WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",  # nothing is ever fetched from a hub; models come from local paths
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",  # the vLLM engine runs inside the rollout actor's process
    "TOKENIZERS_PARALLELISM": "false",
}

REPO = str(Path(__file__).resolve().parents[1])


def local_env() -> dict[str, str]:
    """WORKER_ENV for a Ray started here on 127.0.0.1 (also set in this process): workers import the project from
    this checkout, and Ray keeps 127.0.0.1 instead of swapping in the machine's routable address."""
    env = {**WORKER_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    for k, v in env.items():
        os.environ.setdefault(k, v)
    env["PYTHONPATH"] = REPO + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env
