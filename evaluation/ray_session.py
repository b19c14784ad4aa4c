"""Start or join Ray for an evaluation when it first needs an actor (a finished evaluation reruns without Ray):
``eval.ray_address`` or ``RAY_ADDRESS`` (as under `ray job submit`) joins that cluster; otherwise a local Ray on
127.0.0.1 without a dashboard (an evaluation beside a training run on the same machine must not fight over its
port)."""

from __future__ import annotations

import os
from typing import Optional

from core.ray_env import WORKER_ENV, local_env


def connect(address: Optional[str]) -> None:
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        for k, v in WORKER_ENV.items():
            os.environ.setdefault(k, v)
        ray.init(address=address, runtime_env={"env_vars": dict(WORKER_ENV)}, log_to_driver=True)
    else:
        ray.init(
            address="local",
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            runtime_env={"env_vars": local_env()},
            log_to_driver=True,
        )
