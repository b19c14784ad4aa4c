"""Does the embedded default learn, for every seed? ``python -m benchmarks.learning_seeds [--seeds 0 1 ...]
[-- key=value ...]``

Runs ``python -m cluster.run seed=S`` (the default config: 40 steps of the tiny Janus on the colour reward, a local
Ray cluster of its own) for each seed, one after the other in fresh processes, as a user's ``make run`` does, and
compares the mean reward of the last quarter of the steps with the first quarter's. Target (issue 15): last >= 1.5
x first for every seed. Writes the per-seed table (both quarters' means, their ratio, the fewest image codes a step
used, the run's wall seconds from process start to exit) into LEARNING.md between the markers below (the rest of
the file is left alone) and the raw numbers into LEARNING.json beside it. Exit status 1 if a seed misses the target.

Overrides after ``--`` are passed to every run (for experiments; the committed table uses none).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from benchmarks.cluster_runs import REPO, cluster_run_command, cluster_run_env
from benchmarks.results_io import machine

TARGET = 1.5
BEGIN, END = "<!-- learning_seeds:begin -->", "<!-- learning_seeds:end -->"


def quarter_means(rewards: list[float]) -> tuple[float, float]:
    """Mean of the first and of the last quarter of the steps (a quarter is at least one step)."""
    q = max(1, len(rewards) // 4)
    return float(np.mean(rewards[:q])), float(np.mean(rewards[-q:]))


def run_seed(seed: int, overrides: list[str], keep: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = (keep / f"seed{seed}") if keep else Path(tmp) / "run"
        cmd = cluster_run_command(out, [f"seed={seed}", *overrides])
        t = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, env=cluster_run_env(), capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        rows = pq.read_table(out / "metrics.parquet").to_pylist()
    rewards = [r["reward_mean"] for r in rows]
    first, last = quarter_means(rewards)
    return {
        "seed": seed,
        "first_quarter": first,
        "last_quarter": last,
        "ratio": last / first,
        "wall_s": wall,
        "train_s": float(sum(r["step_s"] for r in rows)),
        "steps": len(rows),
        "rewards": rewards,
        "image_codes_distinct_min": int(min(r["image_codes_distinct"] for r in rows)),
    }


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(results: list[dict], meta: dict) -> str:
    how = f" with overrides `{' '.join(meta['overrides'])}`" if meta["overrides"] else " (the default config)"
    lines = [
        BEGIN,
        f"Measured {meta['date']} on {meta['machine']} (commit {meta['commit']}) by `python -m "
        f"benchmarks.learning_seeds`{how}: each seed a fresh `python -m cluster.run seed=S` process, one after the "
        f"other. Target: last quarter >= {TARGET} x first quarter for every seed.",
        "",
        "| seed | first quarter | last quarter | ratio | target | fewest codes in a step | wall s | training s |",
        "|---:|---:|---:|---:|:---:|---:|---:|---:|",
    ]
    for r in results:
        ok = "met" if r["ratio"] >= TARGET else "**missed**"
        lines.append(
            f"| {r['seed']} | {r['first_quarter']:.3f} | {r['last_quarter']:.3f} | {r['ratio']:.2f} | {ok} | "
            f"{r['image_codes_distinct_min']} | {r['wall_s']:.0f} | {r['train_s']:.0f} |"
        )
    ratios = [r["ratio"] for r in results]
    walls = [r["wall_s"] for r in results]
    lines += [
        "",
        f"Seeds meeting the target: {sum(x >= TARGET for x in ratios)} of {len(ratios)}; ratio min "
        f"{min(ratios):.2f}, median {float(np.median(ratios)):.2f}; wall seconds median "
        f"{float(np.median(walls)):.0f} (max {max(walls):.0f}).",
        END,
    ]
    return "\n".join(lines)


def write_report(results: list[dict], meta: dict, md: Path) -> None:
    block = render(results, meta)
    text = md.read_text() if md.is_file() else "# Does the embedded default learn?\n\n" + BEGIN + END + "\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    md.write_text(text)
    md.with_suffix(".json").write_text(json.dumps({**meta, "target": TARGET, "results": results}, indent=1) + "\n")


def main(argv: list[str]) -> int:
    overrides: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, overrides = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(prog="python -m benchmarks.learning_seeds", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    p.add_argument("--out", type=Path, default=REPO / "LEARNING.md", help="the Markdown report (JSON beside it)")
    p.add_argument("--keep", type=Path, help="keep each run's output directory under this one (seedS/)")
    args = p.parse_args(argv)
    meta = {"date": _dt.date.today().isoformat(), "machine": machine(), "commit": _git_commit(), "overrides": overrides}
    results = []
    for seed in args.seeds:
        r = run_seed(seed, overrides, args.keep)
        results.append(r)
        print(
            f"seed {seed}: first quarter {r['first_quarter']:.3f}, last quarter {r['last_quarter']:.3f}, ratio "
            f"{r['ratio']:.2f}, wall {r['wall_s']:.0f} s",
            flush=True,
        )
        write_report(results, meta, args.out)  # a partial table survives an interrupted sweep
    print(f"table: {args.out}, numbers: {args.out.with_suffix('.json')}")
    return 0 if all(r["ratio"] >= TARGET for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
