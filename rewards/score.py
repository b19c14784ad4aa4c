"""Score image files against a prompt through running reward servers (the client of `python -m rewards.serve`):

    python -m rewards.score --server HOST:PORT [--server HOST:PORT ...] --prompt TEXT
                            [--task-type T] [--nouns a,b] [--metadata JSON] [--config FILE] [--json]
                            [rewards.KEY=VALUE ...] IMAGE [IMAGE ...]

Each ``--server`` is asked which scorer it hosts (its Info call); the images go to every scorer as one group, as
the trainer sends them (servers hosting the same scorer share the calls, with the trainer's retries). Prints one
line per image with every scorer's score, then each score's details (boxes, questions, ...); ``--json`` prints one
JSON object per image instead.

The prompt's task metadata is what the scorers read besides the prompt: ``--task-type`` (one of T2I-R1's
``color, shape, texture, object, non, complex, spatial, numeracy``; default ``object``) and ``--nouns``, or the
fields of a T2I-R1 training row as ``--metadata '{"task_type": "spatial", "nouns": [...], "spatial_info":
{"obj1": ..., "obj2": ..., "locality": ...}}'``. The shared secret (``rewards.token``) and the deadlines come from
the ``rewards`` section of ``--config`` (a preset, a YAML file, a run's config.yaml), as for the server: keep the
token in a file, not on the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import grpc
import numpy as np
from PIL import Image

from core.config import ConfigError, load_config
from core.prompt_file import parse_row
from core.records import PromptRecord
from protos import reward_pb2, reward_pb2_grpc
from rewards import wire
from rewards.base import TASK_TYPES
from rewards.client import RewardClient, RewardServiceError
from rewards.serve import ServeConfig


class ScoreCommandError(RuntimeError):
    """A server, image or metadata problem; the message says which and how to fix it."""


@dataclass
class ServerInfo:
    address: str
    scorer: str
    version: str
    requires_token: bool


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m rewards.score",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m rewards.score --server 127.0.0.1:50051 --prompt "
        "'a red car' --task-type color --nouns car outputs/generate/images/*.png",
    )
    ap.add_argument("--server", action="append", required=True, help="a reward server's host:port (repeatable)")
    ap.add_argument("--prompt", required=True, help="the raw prompt the images were drawn for")
    ap.add_argument("--task-type", default=None, help=f"one of {', '.join(TASK_TYPES)} (default: object)")
    ap.add_argument("--nouns", default=None, help="comma-separated objects of the prompt, e.g. 'car,tree'")
    ap.add_argument("--metadata", default=None, help="JSON object with a T2I-R1 row's task fields")
    ap.add_argument("--config", default=None, help="preset or YAML file whose rewards section holds the token")
    ap.add_argument("--json", action="store_true", help="one JSON object per image")
    ap.add_argument("items", nargs="+", help="image files, and rewards.KEY=VALUE config overrides")
    args = ap.parse_intermixed_args(argv)
    args.overrides = [a for a in args.items if a.startswith("rewards.") and "=" in a]
    args.images = [a for a in args.items if a not in args.overrides]
    if not args.images:
        ap.error("no image files given")
    return args


def prompt_record(prompt: str, task_type: Optional[str], nouns: Optional[str], metadata: Optional[str]) -> PromptRecord:
    """The prompt and its task metadata, checked as a row of T2I-R1's training file."""
    row: dict[str, Any] = {}
    if metadata is not None:
        try:
            row = json.loads(metadata)
        except json.JSONDecodeError as e:
            raise ScoreCommandError(f"--metadata is not JSON ({e}): {metadata!r}") from None
        if not isinstance(row, dict):
            raise ScoreCommandError(f"--metadata must be a JSON object, got {metadata!r}")
    if task_type is not None:
        row["task_type"] = task_type
    if nouns is not None:
        row["nouns"] = [n.strip() for n in nouns.split(",") if n.strip()]
    row.setdefault("task_type", "object")
    try:
        record = parse_row({**row, "prompt": prompt}, index=-1)
    except ValueError as e:
        raise ScoreCommandError(f"task metadata: {e}") from None
    if record.task_type not in TASK_TYPES:
        raise ScoreCommandError(f"--task-type {record.task_type!r} is not one of {', '.join(TASK_TYPES)}")
    if not record.nouns:
        raise ScoreCommandError("the scorers need the prompt's objects: give --nouns, e.g. --nouns car,tree")
    return record


def read_image(path: str) -> np.ndarray:
    try:
        with Image.open(Path(path).expanduser()) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise ScoreCommandError(f"cannot read image {path!r}: {e}") from None


def server_info(address: str, token: Optional[str], timeout_s: float) -> ServerInfo:
    """Which scorer the server at ``address`` hosts (its Info call)."""
    metadata = ((wire.AUTH_HEADER, wire.auth_value(token)),) if token is not None else ()
    with grpc.insecure_channel(address) as channel:
        try:
            info = reward_pb2_grpc.RewardServiceStub(channel).Info(
                reward_pb2.InfoRequest(), timeout=timeout_s, metadata=metadata
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise ScoreCommandError(
                    f"the reward server at {address} requires its token: put rewards.token in a "
                    f"config file and pass it with --config FILE"
                ) from None
            raise ScoreCommandError(
                f"no reward server answers at {address} ({e.code().name}: {e.details()}); "
                f"start one with `python -m rewards.serve --scorer NAME --port PORT`"
            ) from None
    return ServerInfo(address, info.scorer, info.version, info.requires_token)


def score_images(
    servers: list[ServerInfo], cfg: ServeConfig, record: PromptRecord, images: list[np.ndarray]
) -> dict[str, tuple[list[float], list[dict[str, Any]]]]:
    """Every scorer's (scores, details) of the images, scored as one group."""
    endpoints: dict[str, list[str]] = {}
    for s in servers:
        endpoints.setdefault(s.scorer, []).append(s.address)
    with RewardClient(cfg.rewards, endpoints, scorers=list(endpoints)) as client:
        (group,) = client.score([record], [images]).groups
    return {name: (reply.scores, reply.details) for name, reply in group.replies.items()}


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(ServeConfig, args.config, args.overrides, partial=True)
        record = prompt_record(args.prompt, args.task_type, args.nouns, args.metadata)
        images = [read_image(p) for p in args.images]
        servers = [server_info(a, cfg.rewards.token, cfg.rewards.deadline_s) for a in args.server]
        results = score_images(servers, cfg, record, images)
    except (ConfigError, ScoreCommandError, RewardServiceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for i, path in enumerate(args.images):
        scores = {name: s[i] for name, (s, _) in results.items()}
        details = {name: d[i] for name, (_, d) in results.items()}
        if args.json:
            print(json.dumps({"image": path, "scores": scores, "details": details}), flush=True)
            continue
        print(f"{path}  " + "  ".join(f"{name} {v:.4f}" for name, v in scores.items()), flush=True)
        for name, d in details.items():
            print(f"    {name}: {json.dumps(d)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
