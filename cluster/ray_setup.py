"""Start or join Ray, with every socket on the configured host (127.0.0.1 on one machine)."""

from __future__ import annotations

import os
from pathlib import Path

from cluster.config import Config
from cluster.console import SETUP_HOOK
from core.ray_env import WORKER_ENV  # passed through the job's runtime_env so workers get it too


def connect(cfg: Config) -> tuple[str, str]:
    """Join the cluster named by cluster.address or RAY_ADDRESS (set by `ray job submit`), else start a local
    one with its dashboard. Returns the dashboard URL ('' when the dashboard is off or unknown) and the
    directory of this node's Ray logs (every actor's stdout/stderr)."""
    import ray

    for k, v in WORKER_ENV.items():
        os.environ.setdefault(k, v)
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(WORKER_ENV)
    if cfg.cluster.host in ("127.0.0.1", "localhost"):
        # Ray otherwise swaps 127.0.0.1 for the machine's routable address and listens there.
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    # every worker process formats our loggers' records so that the driver can tell them from library output
    hook = {"worker_process_setup_hook": SETUP_HOOK}
    if address:
        ctx = ray.init(address=address, runtime_env={"env_vars": env, **hook}, log_to_driver=True)
    else:
        env["PYTHONPATH"] = repo + os.pathsep + os.environ.get("PYTHONPATH", "")
        ctx = ray.init(
            address="local",
            num_cpus=cfg.cluster.num_cpus,
            include_dashboard=True,
            dashboard_host=cfg.cluster.host,
            dashboard_port=cfg.cluster.dashboard_port,
            object_store_memory=cfg.cluster.object_store_mb * 2**20,
            _node_ip_address=cfg.cluster.host,
            runtime_env={"env_vars": env, **hook},
            log_to_driver=True,
        )
    url = ctx.dashboard_url or ""
    logs = os.path.join(ctx.address_info.get("session_dir", ""), "logs")
    return (url if not url or url.startswith("http") else f"http://{url}"), logs
