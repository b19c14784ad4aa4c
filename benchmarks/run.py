"""`make bench`: run every benchmark module (benchmarks/bench_*.py, each with ``run() -> list[Entry]``),
or only those named: ``python -m benchmarks.run sampler sync``."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from benchmarks.results_io import record


def main(argv: list[str]) -> int:
    mods = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    wanted = [m for m in mods if not argv or any(a in m for a in argv)]
    if not wanted:
        print(f"no benchmark matches {argv}; available: {', '.join(m[6:] for m in mods)}")
        return 2
    failed = []
    for m in wanted:
        t = time.perf_counter()
        print(f"== {m}", flush=True)
        entries = importlib.import_module(f"benchmarks.{m}").run()
        record(entries)
        for e in entries:
            flag = (
                ""
                if e.target is None
                else ("  (target met)" if e.ratio >= e.target else f"  (BELOW target {e.target}x)")
            )
            print(f"   {e.name}: ours {e.ours:.4g} vs baseline {e.baseline:.4g} {e.unit} -> {e.ratio:.2f}x{flag}")
            if e.target is not None and e.ratio < e.target:
                failed.append(e.name)
        print(f"   ({time.perf_counter() - t:.0f} s)", flush=True)
    print("results: benchmarks/results.json, BENCHMARKS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
