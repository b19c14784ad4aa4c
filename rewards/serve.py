"""Host one reward server without Ray, for users who run their reward models elsewhere:

    python -m rewards.serve --scorer gdino [--host 0.0.0.0] [--port 50051] [--config FILE] [key=value ...]

The config is the ``rewards`` section of the run's config (a preset, a YAML file, a run's config.yaml; other
sections in it are ignored) with ``key=value`` overrides of it, e.g. ``rewards.gdino.path=/models/gdino``; the
scorer's section is ``rewards.<scorer>``.
Prints ``serving <scorer> <version> on <host:port>`` once it accepts calls; SIGINT / SIGTERM stop it after
the calls in flight finish (up to --grace seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass, field

from core.config import load_cli_config
from rewards.config import SCORER_NAMES, RewardsConfig
from rewards.server import RewardServer, make_scorer


@dataclass
class ServeConfig:
    """The section of the run's config a reward server reads."""

    rewards: RewardsConfig = field(default_factory=RewardsConfig)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rewards.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--scorer", required=True, choices=SCORER_NAMES, help="which scorer this server hosts")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: one the OS picks, printed)")
    p.add_argument("--config", default=None, help="preset name or YAML file")
    p.add_argument("--grace", type=float, default=5.0, help="seconds in-flight calls get on shutdown")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    return p.parse_intermixed_args(argv)


async def serve(server: RewardServer, grace_s: float) -> None:
    address = await server.start()
    print(f"serving {server.scorer.name} {server.scorer.version} on {address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace_s)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cfg = load_cli_config(ServeConfig, args.config, args.overrides, partial=True)
    scorer = make_scorer(args.scorer, cfg.rewards)
    server = RewardServer(scorer, cfg.rewards, args.host, args.port)
    asyncio.run(serve(server, args.grace))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
