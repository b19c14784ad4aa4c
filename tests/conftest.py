"""Shared fixtures: a tiny random Janus built once per session, and a loopback-only Ray instance."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports ray, vllm, transformers or deepspeed: everything offline, on loopback, in-process.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# What Ray actors of the session get, as set now: the vLLM engine removes VLLM_CPU_KVCACHE_SPACE from the process
# environment when it starts, so a Ray fixture set up after a vLLM test must not read it from there.
ACTOR_ENV = {
    k: os.environ[k]
    for k in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
        "VLLM_ENABLE_V1_MULTIPROCESSING",
        "VLLM_CPU_KVCACHE_SPACE",
        "DS_ACCELERATOR",
        "TOKENIZERS_PARALLELISM",
    )
}

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA: skipped where there is none."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (prompt files for tests; read from there, never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data directory {SHARED_DATA} not found")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model_cfg(tmp_path_factory):
    """ModelConfig of the embedded tiny Janus, cached in a per-session directory."""
    from policy.config import ModelConfig

    return ModelConfig(cache_dir=str(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_cfg):
    from policy.model import load_policy

    return load_policy(tiny_model_cfg)


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """A local Ray instance on 127.0.0.1 shared by the session's Ray tests."""
    import ray

    repo = str(Path(__file__).resolve().parents[1])
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024**2,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={
            "env_vars": {
                "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", ""),
                **ACTOR_ENV,
            }
        },
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one intra-op thread for a test module (use with pytest.mark.usefixtures).

    On the shared 2-core test machine, two OpenMP threads competing with other processes made small forwards
    10-50x slower (measured: 10-17 s vs 0.25 s for the same generate call); one thread is steady.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
