"""The Python half of benchmarks/gpu_check.sh (one GPU run for issues 11 and 12): its benchmark stages, its
summary, and recording the entries here afterwards.

    python -m benchmarks.gpu_check bench_gpu SHAPE OUT [--dry-run]   sampler image tokens/s (bench_gpu.py)
    python -m benchmarks.gpu_check step SHAPE OUT [--dry-run]        whole BiCoT-GRPO steps (bench_gpu_step.py)
    python -m benchmarks.gpu_check summary OUT                       stages, tests and entries; one final line
    python -m benchmarks.gpu_check record OUT                        merge OUT/entries.json into results.json

SHAPE is 1b or 7b. A stage adds its entries to OUT/entries.json as soon as it has them. ``--dry-run`` runs the
same code on CPU with the tiny model (it checks the script, it measures nothing): its entries carry
``details.dry_run`` and ``record`` refuses them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from dataclasses import fields
from pathlib import Path
from typing import Any

STAGES_FILE, ENTRIES_FILE, TESTS_FILE, SUMMARY_FILE = "stages.tsv", "entries.json", "tests.xml", "summary.txt"
DRY_RUN = "tiny shapes on CPU: checks benchmarks/gpu_check.sh, measures nothing"


def add_entries(out: Path, entries: list) -> None:
    """Merge entries (results_io.Entry) into ``out/entries.json`` by name."""
    path = out / ENTRIES_FILE
    old = json.loads(path.read_text()) if path.is_file() else []
    new = {e.name: e.to_json() for e in entries}
    path.write_text(json.dumps([e for e in old if e["name"] not in new] + list(new.values()), indent=1) + "\n")


def _measure(kind: str, shape: str, dry_run: bool) -> list:
    import torch

    if not dry_run and not torch.cuda.is_available():
        raise SystemExit(f"{kind} {shape}: no CUDA device (use --dry-run to check the script on CPU)")
    if kind == "bench_gpu":
        from benchmarks import bench_gpu

        if dry_run:
            return [bench_gpu.measure(shape, bench_gpu.SHAPES["tiny"], device="cpu", images=4, rounds=1)]
        return [bench_gpu.measure(shape, rounds=2)]  # two timed rounds: the run has 8 minutes for everything
    from benchmarks import bench_gpu_step

    if dry_run:
        return bench_gpu_step.measure(shape, bench_gpu_step.SETUPS["tiny"], device="cpu")
    return bench_gpu_step.measure(shape)


def run_stage(kind: str, shape: str, out: Path, dry_run: bool) -> None:
    entries = _measure(kind, shape, dry_run)
    for e in entries:
        if dry_run:
            e.details["dry_run"] = DRY_RUN
        print(f"   {e.name}: ours {e.ours:.4g} vs baseline {e.baseline:.4g} {e.unit} -> {e.ratio:.2f}x", flush=True)
    add_entries(out, entries)


# --------------------------------------------------------------------------------------------------- summary


def _stages(out: Path) -> list[dict[str, str]]:
    path = out / STAGES_FILE
    if not path.is_file():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [dict(zip(("name", "rc", "seconds", "budget"), r)) for r in rows]


def _tests(out: Path) -> dict[str, int] | None:
    path = out / TESTS_FILE
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def _entries(out: Path) -> list[dict[str, Any]]:
    path = out / ENTRIES_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def summary(out: Path) -> int:
    """Write ``out/summary.txt`` and print it; 0 when every stage ran and passed."""
    stages, tests, entries = _stages(out), _tests(out), _entries(out)
    lines = ["stage            rc       seconds  budget"]
    lines += [f"{s['name']:<16} {s['rc']:<8} {s['seconds']:>7}  {s['budget']}" for s in stages]
    if tests is not None:
        lines.append(
            f"tests: {tests['passed']} passed, {tests['failures']} failed, {tests['errors']} errors, "
            f"{tests['skipped']} skipped"
        )
    for e in entries:
        met = "" if e.get("meets_target") is None else ("  target met" if e["meets_target"] else "  BELOW target")
        lines.append(
            f"{e['name']}: ours {e['ours']:.4g} vs baseline {e['baseline']:.4g} {e['unit']} ({e['ratio']:.2f}x){met}"
        )
        d = e.get("details", {})
        for key in ("bandwidth_limit_fraction", "bandwidth_limit_fraction_with_kv", "ours_stage_s", "baseline_stage_s"):
            if key in d:
                lines.append(f"    {key}: {d[key]}")
    ok = [s for s in stages if s["rc"] == "0"]
    failed = [s["name"] for s in stages if s["rc"] != "0"]
    final = (
        f"gpu_check: {len(ok)}/{len(stages)} stages ok"
        + (f" (not ok: {', '.join(failed)})" if failed else "")
        + (
            ""
            if tests is None
            else f"; tests {tests['passed']} passed, {tests['failures'] + tests['errors']} "
            f"failed, {tests['skipped']} skipped"
        )
        + f"; {len(entries)} entries in {out / ENTRIES_FILE}"
    )
    lines.append(final)
    text = "\n".join(lines) + "\n"
    (out / SUMMARY_FILE).write_text(text)
    print(text, end="")
    return 0 if stages and not failed else 1


def record(out: Path) -> None:
    """Merge the GPU run's entries into benchmarks/results.json and BENCHMARKS.md (run here, after the run)."""
    from benchmarks.results_io import Entry
    from benchmarks.results_io import record as record_entries

    data = _entries(out)
    if not data:
        raise SystemExit(f"no entries in {out / ENTRIES_FILE}")
    dry = [e["name"] for e in data if e.get("details", {}).get("dry_run")]
    if dry:
        raise SystemExit(f"{out / ENTRIES_FILE} is from a dry run ({', '.join(dry)}): nothing recorded")
    names = {f.name for f in fields(Entry)}
    entries = [Entry(**{k: v for k, v in e.items() if k in names}) for e in data]
    bad = [e.name for e in entries if not (math.isfinite(e.ours) and math.isfinite(e.baseline))]
    if bad:
        raise SystemExit(f"non-finite values in {', '.join(bad)}: nothing recorded")
    record_entries(entries)
    print(f"recorded {len(entries)} entries: {', '.join(e.name for e in entries)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for kind in ("bench_gpu", "step"):
        p = sub.add_parser(kind)
        p.add_argument("shape", choices=("1b", "7b"))
        p.add_argument("out", type=Path)
        p.add_argument("--dry-run", action="store_true")
    for name in ("summary", "record"):
        sub.add_parser(name).add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "summary":
        return summary(args.out)
    if args.command == "record":
        record(args.out)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    run_stage(args.command, args.shape, args.out, args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
