"""`python -m cluster.run [--config FILE] [key=value ...]`: train BiCoT-GRPO on Ray.

Starts a local Ray cluster (with its dashboard) or joins the one named by cluster.address / RAY_ADDRESS (as under
`ray job submit`), then runs trainer.steps steps of the loop in cluster/trainer.py. Add resume=true to continue a
stopped run from its last checkpoint.
"""

from __future__ import annotations

import argparse
import sys

from cluster.config import load_cli_config
from core.prompt_file import DataError


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m cluster.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m cluster.run trainer.steps=50 seed=1\n"
        "  python -m cluster.run --config janus-pro-7b model.path=/models/Janus-Pro-7B "
        "rewards.hps.path=... rewards.gdino.path=... rewards.git.path=... "
        "rewards.orm.path=...\n  python -m cluster.run output_dir=outputs/run resume=true",
    )
    p.add_argument("--config", help="a preset name (tiny, janus-pro-1b, janus-pro-7b) or a YAML file")
    p.add_argument("overrides", nargs="*", help="key=value overrides of any config field")
    return p.parse_intermixed_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    cfg = load_cli_config(args.config, args.overrides)
    from cluster.console import WorkerOutput, dashboard_line, quiet_ray_driver_logs, token_auth_enabled
    from cluster.preflight import StartupError, check_cluster, prepare
    from cluster.ray_setup import connect
    from cluster.run_dir import RunDirError
    from cluster.summary import end_of_run
    from cluster.trainer import Trainer

    # Everything that can be checked before an actor starts is, so that a run that cannot work says why at once.
    try:
        run = prepare(cfg, args.config, args.overrides)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    except (StartupError, RunDirError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg, driver_log = run.cfg, run.driver_log
    trainer = Trainer(cfg, run.data)
    quiet_ray_driver_logs(driver_log, cfg.logging.verbose)
    dashboard, ray_logs = connect(cfg)
    WorkerOutput(trainer.out.logs, cfg.logging.verbose).install()
    try:
        check_cluster(cfg)
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = trainer.out.root
    print(
        f"output dir: {out}\n  metrics: {trainer.out.metrics_path}\n  rollouts: {trainer.out.rollouts}\n"
        f"  images: {trainer.out.images}\n  checkpoints: {trainer.out.checkpoints}",
        flush=True,
    )
    print(f"  logs: {trainer.out.logs} (driver and each actor), {ray_logs} (Ray's own)", flush=True)
    if dashboard:
        print(dashboard_line(dashboard, token_auth_enabled()), flush=True)
    try:
        trainer.run()
    finally:
        trainer.shutdown()
    print(end_of_run(cfg, trainer.out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
