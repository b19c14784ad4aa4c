"""Weight broadcast from the learner to the rollout workers, in fixed-size buckets, stamped with a version.

A weight-sync process group holds learner rank 0 (group rank 0, the sender) and every rollout worker (ranks
1..N). It is separate from the learner's own group: built on its own store with :func:`standalone_group`, so a
learner rank can belong to both.

Wire format of one sync: a header ``[MAGIC, version, layout digest, total elements]`` (int64), then the
trainable parameters, in a fixed order, cast to the rollout dtype and laid end to end as one flat stream cut
into buckets of ``learner.sync_bucket_mb`` (a parameter may straddle two buckets; the last bucket is shorter).
A receiver lands every bucket directly in its slice of one staging buffer and hands the new weights to the
rollout worker only after the last bucket arrived: a sync that breaks off (a dead worker, a dead learner, a
timeout) raises and leaves the worker on its old version. The sender closes the group when it fails, so the
other receivers fail at once instead of waiting for the timeout; the driver then forms a new group
(cluster/weight_sync.py).

``bucket_numel = 0`` sends one broadcast per tensor (the baseline of benchmarks/bench_learner.py).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from policy.model import DTYPES
from weightsync.distributed import connect_store, standalone_group

MAGIC = 0x7A51C0DE


class WeightSyncError(RuntimeError):
    """A weight sync failed; the message names the version and which member failed how."""


@dataclass(frozen=True)
class SyncLayout:
    """What is sent and how: parameter names and shapes in order, the wire dtype, the bucket size."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: str  # a key of policy.model.DTYPES: the rollout workers' parameter dtype
    bucket_numel: int  # elements per bucket; 0 = one broadcast per tensor

    @classmethod
    def build(cls, named_shapes: Iterable[tuple[str, Sequence[int]]], dtype: str, bucket_mb: float) -> SyncLayout:
        names, shapes = [], []
        for n, s in named_shapes:
            names.append(n)
            shapes.append(tuple(int(x) for x in s))
        if not names:
            raise ValueError("weight sync: no trainable parameters to send")
        itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
        bucket = int(bucket_mb * 2**20) // itemsize if bucket_mb > 0 else 0
        return cls(tuple(names), tuple(shapes), dtype, bucket)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def numels(self) -> list[int]:
        out = []
        for s in self.shapes:
            n = 1
            for x in s:
                n *= x
            out.append(n)
        return out

    @property
    def total_numel(self) -> int:
        return sum(self.numels)

    def chunks(self) -> list[tuple[int, int]]:
        """(start, end) element ranges of the stream, one per broadcast."""
        if self.bucket_numel <= 0:
            offsets, out = 0, []
            for n in self.numels:
                out.append((offsets, offsets + n))
                offsets += n
            return out
        total = self.total_numel
        return [(a, min(a + self.bucket_numel, total)) for a in range(0, total, self.bucket_numel)]

    def digest(self) -> int:
        """63-bit fingerprint of names, shapes and dtype (what both sides must agree on)."""
        text = repr((self.names, self.shapes, self.dtype)).encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & (2**63 - 1)

    def check(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Raise ValueError unless ``named`` (a receiver's parameters) has exactly this layout's names and shapes."""
        theirs = {n: tuple(p.shape) for n, p in named}
        ours = dict(zip(self.names, self.shapes))
        missing = [n for n in ours if n not in theirs]
        extra = [n for n in theirs if n not in ours]
        wrong = [
            f"{n}: {theirs[n]} here vs {ours[n]} in the learner" for n in ours if n in theirs and theirs[n] != ours[n]
        ]
        if missing or extra or wrong:
            raise ValueError(
                "weight sync layout mismatch between learner and rollout worker "
                f"(missing here: {missing[:3]}, not in the learner: {extra[:3]}, shapes: {wrong[:3]}); "
                "both must load the same model with the same model.trainable prefixes"
            )


class SyncGroup:
    """This process's membership in a weight-sync group (rank 0 = the sender)."""

    def __init__(self, pg: dist.ProcessGroup, rank: int, world_size: int, device: torch.device):
        self.pg, self.rank, self.world_size, self.device = pg, rank, world_size, torch.device(device)

    @classmethod
    def join(
        cls,
        host: str,
        port: int,
        rank: int,
        world_size: int,
        backend: str,
        device,
        timeout_s: float,
        store: Optional[dist.Store] = None,
    ) -> SyncGroup:
        """Blocks until all ``world_size`` members joined. Rank 0 passes the store it hosts."""
        store = store if store is not None else connect_store(host, port, world_size, timeout_s)
        return cls(standalone_group(store, rank, world_size, backend, host, timeout_s), rank, world_size, device)

    def broadcast(self, tensor: torch.Tensor) -> None:
        if self.pg is None:
            raise WeightSyncError("the weight-sync group was closed after a failed sync; form a new one")
        self.pg.broadcast(tensor, 0).wait()

    def close(self) -> None:
        """Drop the group: closes its connections, so members blocked in a broadcast fail immediately."""
        self.pg = None


def _header(version: int, layout: SyncLayout) -> torch.Tensor:
    return torch.tensor([MAGIC, version, layout.digest(), layout.total_numel], dtype=torch.int64)


def send_weights(
    group: SyncGroup, layout: SyncLayout, version: int, tensors: Iterator[tuple[str, torch.Tensor]]
) -> dict[str, float]:
    """Rank 0: broadcast one version. ``tensors`` yields (name, full tensor) in layout order.

    On failure the group is closed and ``tensors`` is still drained (under ZeRO-3 the other learner ranks
    take part in gathering each tensor, and must not be left waiting), then WeightSyncError is raised.
    """
    t0 = time.perf_counter()
    chunks = layout.chunks()
    sent = 0
    try:
        group.broadcast(_header(version, layout).to(group.device))
        if layout.bucket_numel <= 0:
            for _, t in _checked(tensors, layout):
                group.broadcast(t.detach().to(group.device, layout.torch_dtype).contiguous())
                sent += 1
        else:
            bucket = torch.empty(layout.bucket_numel, dtype=layout.torch_dtype, device=group.device)
            fill = 0
            for _, t in _checked(tensors, layout):
                flat = t.detach().reshape(-1)
                pos = 0
                while pos < flat.numel():
                    take = min(flat.numel() - pos, layout.bucket_numel - fill)
                    bucket[fill : fill + take].copy_(flat[pos : pos + take])
                    fill, pos = fill + take, pos + take
                    if fill == layout.bucket_numel:
                        group.broadcast(bucket)
                        sent, fill = sent + 1, 0
            if fill:
                group.broadcast(bucket[:fill])
                sent += 1
        if sent != len(chunks):
            raise WeightSyncError(f"sent {sent} chunks but the layout has {len(chunks)}")
    except Exception as e:
        group.close()
        for _ in tensors:  # keep the other learner ranks' collective gathers in step
            pass
        raise WeightSyncError(
            f"sending weight version {version} failed after {sent} of {len(chunks)} chunks: {e}"
        ) from e
    seconds = time.perf_counter() - t0
    nbytes = layout.total_numel * torch.empty((), dtype=layout.torch_dtype).element_size()
    return {"seconds": seconds, "bytes": float(nbytes), "chunks": float(len(chunks))}


def _checked(tensors: Iterator[tuple[str, torch.Tensor]], layout: SyncLayout) -> Iterator[tuple[str, torch.Tensor]]:
    count = 0
    for name, t in tensors:
        if count >= len(layout.names):
            raise WeightSyncError(f"more parameters than the layout's {len(layout.names)} (extra: {name})")
        expected, numel = layout.names[count], layout.numels[count]
        if name != expected or t.numel() != numel:
            raise WeightSyncError(
                f"parameter {count} is {name} with {t.numel()} elements; layout says {expected} with {numel}"
            )
        count += 1
        yield name, t
    if count != len(layout.names):
        raise WeightSyncError(f"only {count} of {len(layout.names)} parameters were produced")


class WeightReceiver:
    """Rank >= 1: receives whole versions into a staging buffer (one copy of the trainable weights)."""

    def __init__(self, group: SyncGroup, layout: SyncLayout):
        self.group, self.layout = group, layout
        self.staging = torch.empty(layout.total_numel, dtype=layout.torch_dtype, device=group.device)

    def receive(self) -> tuple[int, list[tuple[str, torch.Tensor]]]:
        """Block until one complete version arrived; return it as (version, [(name, view of staging)]).
        The views stay valid until the next receive. Raises WeightSyncError on any failure (then nothing of
        the new version may be applied)."""
        layout, k = self.layout, 0
        chunks = layout.chunks()
        try:
            header = torch.zeros(4, dtype=torch.int64, device=self.group.device)
            self.group.broadcast(header)
            magic, version, digest, total = (int(x) for x in header.cpu())
            if magic != MAGIC or digest != layout.digest() or total != layout.total_numel:
                raise WeightSyncError(
                    f"header {header.tolist()} does not match this receiver's layout "
                    f"(digest {layout.digest()}, {layout.total_numel} elements)"
                )
            for k, (a, b) in enumerate(chunks):  # noqa: B007 (k counts the chunks received, for the error)
                self.group.broadcast(self.staging[a:b])
        except Exception as e:
            self.group.close()
            raise WeightSyncError(
                f"rollout worker (sync rank {self.group.rank}): receiving failed after {k} of "
                f"{len(chunks)} chunks, nothing applied: {e}"
            ) from e
        out, offset = [], 0
        for name, shape, n in zip(layout.names, layout.shapes, layout.numels):
            out.append((name, self.staging[offset : offset + n].view(shape)))
            offset += n
        return version, out


def tensor_checksums(named: Iterable[tuple[str, torch.Tensor]], dtype: Optional[torch.dtype] = None) -> dict[str, str]:
    """sha1 of each tensor's bytes (after an optional cast): equal checksums = bit-for-bit equal weights."""
    out = {}
    for n, t in named:
        t = t.detach().to("cpu", dtype or t.dtype).contiguous()
        out[n] = hashlib.sha1(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"").hexdigest()
    return out
