"""torch.distributed plumbing shared by the learner group and the weight-sync group.

Every rendezvous store listens on a socket we bind ourselves to a given host (127.0.0.1 on one machine), on a
port the OS picks, so no port is guessed, raced for, or exposed beyond that host.
"""

from __future__ import annotations

import datetime
import os
import socket
from typing import Optional

import torch
import torch.distributed as dist


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


class Rendezvous:
    """The master side of a TCPStore: owns a listening socket on ``host`` with an OS-chosen port."""

    def __init__(self, host: str, world_size: int, timeout_s: float = 300.0):
        self.host = host
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(max(world_size, 8))
        self.port = int(sock.getsockname()[1])
        # The store takes the descriptor over (detach: Python must not close it under the store's daemon).
        self.store = dist.TCPStore(
            host,
            self.port,
            world_size,
            is_master=True,
            timeout=datetime.timedelta(seconds=timeout_s),
            wait_for_workers=False,
            master_listen_fd=sock.detach(),
            use_libuv=False,
        )


def connect_store(host: str, port: int, world_size: int, timeout_s: float = 300.0) -> dist.TCPStore:
    return dist.TCPStore(
        host, port, world_size, is_master=False, timeout=datetime.timedelta(seconds=timeout_s), use_libuv=False
    )


def init_default_group(
    store: dist.Store, rank: int, world_size: int, backend: Optional[str] = None, timeout_s: float = 1800.0
) -> None:
    """Initialise this process's default process group (the learner ranks) on an existing store."""
    if dist.is_initialized():
        raise RuntimeError("torch.distributed is already initialised in this process; one learner rank per process")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world_size)
    dist.init_process_group(
        backend or default_backend(),
        store=store,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def shutdown_default_group() -> None:
    """Barrier, then destroy (without it a 2-rank gloo job aborts at exit with SIGABRT)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def standalone_group(
    store: dist.Store, rank: int, world_size: int, backend: str, host: str, timeout_s: float
) -> dist.ProcessGroup:
    """A process group outside this process's default group (a process can be a learner rank and a member of
    the weight-sync group at once). Gloo binds its device to ``host``."""
    timeout = datetime.timedelta(seconds=timeout_s)
    if backend == "gloo":
        opts = dist.ProcessGroupGloo._Options()
        opts._devices = [dist.ProcessGroupGloo.create_device(hostname=host)]
        opts._timeout = timeout
        return dist.ProcessGroupGloo(store, rank, world_size, opts)
    if backend == "nccl":
        opts = dist.ProcessGroupNCCL.Options()
        opts._timeout = timeout
        return dist.ProcessGroupNCCL(store, rank, world_size, opts)
    raise ValueError(f"weight-sync backend must be gloo or nccl, got {backend!r}")
