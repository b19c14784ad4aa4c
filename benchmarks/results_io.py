"""Benchmark results: one entry per measurement, merged by name into benchmarks/results.json and rendered
to BENCHMARKS.md. Every entry compares ``ours`` against a ``baseline`` measured in the same process."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
REPORT = ROOT / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{gpu}, {platform.system()} {platform.machine()}"


@dataclass
class Entry:
    name: str
    ours: float
    baseline: float
    unit: str
    higher_is_better: bool = True
    target: float | None = None  # required ratio (ours / baseline when higher is better, else baseline / ours)
    details: dict[str, Any] = field(default_factory=dict)
    machine: str = field(default_factory=machine)
    date: str = field(default_factory=lambda: _dt.date.today().isoformat())

    @property
    def ratio(self) -> float:
        if self.higher_is_better:
            return self.ours / self.baseline if self.baseline else float("inf")
        return self.baseline / self.ours if self.ours else float("inf")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = round(self.ratio, 3)
        d["meets_target"] = None if self.target is None else bool(self.ratio >= self.target)
        return d


def load() -> list[dict[str, Any]]:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else []


def record(entries: list[Entry]) -> None:
    """Replace entries of the same name, keep the rest, rewrite results.json and BENCHMARKS.md."""
    new = {e.name: e.to_json() for e in entries}
    merged = [e for e in load() if e["name"] not in new] + list(new.values())
    merged.sort(key=lambda e: e["name"])
    RESULTS.write_text(json.dumps(merged, indent=1) + "\n")
    render(merged)


def render(entries: list[dict[str, Any]]) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`benchmarks/results.json` holds the same data). Each row measures our code",
        "against a baseline in the same process; the ratio is the speed-up (or saving) of ours.",
        "",
        "| name | ours | baseline | unit | ratio | target | met | machine | date |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in entries:
        target = "" if e.get("target") is None else f"{e['target']}x"
        met = {True: "yes", False: "**no**", None: ""}[e.get("meets_target")]
        lines.append(
            f"| {e['name']} | {e['ours']:.4g} | {e['baseline']:.4g} | {e['unit']} | {e['ratio']:.2f}x | {target} "
            f"| {met} | {e['machine']} | {e['date']} |"
        )
    notes = [
        f"- **{e['name']}**: " + ", ".join(f"{k}={v}" for k, v in e["details"].items())
        for e in entries
        if e.get("details")
    ]
    if notes:
        lines += ["", "## Details", ""] + notes
    REPORT.write_text("\n".join(lines) + "\n")
