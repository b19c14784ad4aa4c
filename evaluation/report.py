"""Stage 3, the report: ``report.json`` and ``report.md`` in ``eval.output_dir``, our policies' rows beside the
published rows, every metric tagged ``exact``, ``same-weights``, ``substitute`` or ``embedded-proxy`` with the
reason; ``charts/{benchmark}.png`` (the categories as bars) and ``grids/{benchmark}_{category}.png`` (sample images,
one row per policy, captioned with the score, the prompt and the CoT).

Numbers are means over the images scored so far (the counts say how many of the planned images that is). On a
prompt subset (``eval.max_prompts``) or with proxies they are not comparable to the published rows, and the report
says so.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from core.images import decode_png
from evaluation.base import EvalItem, Fidelity
from evaluation.catalog import COMPBENCH, GENEVAL, OFFICIAL_IMAGES_PER_PROMPT, WISE
from evaluation.config import EvalConfig, Scoring
from evaluation.figures import bar_chart, sample_grid
from evaluation.metrics import CategoryMetric, benchmark_overall, category_mean, worst_fidelity
from evaluation.plan import ImageJob, images_per_prompt
from evaluation.policies import PolicyUnderTest
from evaluation.published import published_rows
from evaluation.records_log import atomic_write
from evaluation.score import Scored, read_meta, scored_images

TITLES = {COMPBENCH: "T2I-CompBench", GENEVAL: "GenEval", WISE: "WISE"}
CATEGORY_TITLES = {
    "color": "Color",
    "shape": "Shape",
    "texture": "Texture",
    "spatial": "Spatial",
    "non_spatial": "Non-spatial",
    "complex": "Complex",
    "numeracy": "Numeracy",
    "3d_spatial": "3D spatial",
    "single_object": "Single",
    "two_object": "Two",
    "counting": "Count",
    "colors": "Colors",
    "position": "Position",
    "color_attr": "ColorAttr",
}


def _fidelity(folders: list[Path], passes: set[str]) -> tuple[str, str]:
    """The metric's tag (its furthest part's) and the reasons, from what the evaluators said when they loaded."""
    metas = {}
    for p in sorted(passes):
        for folder in folders:
            meta = read_meta(folder, p)
            if meta is not None:
                metas[p] = meta
                break
    tag = worst_fidelity([m["fidelity"] for m in metas.values()])
    notes = [(m["name"], m["note"] or "same weights and procedure") for m in metas.values()]
    note = notes[0][1] if len(notes) == 1 else "; ".join(f"{name}: {n}" for name, n in notes)
    return tag, note


def build_report(
    cfg: EvalConfig,
    use_cot: bool,
    policies: list[PolicyUnderTest],
    folders: list[Path],
    jobs: list[ImageJob],
    metric_of: Callable[[EvalItem], CategoryMetric],
) -> dict[str, Any]:
    images = {p.label: scored_images(f, jobs, metric_of) for p, f in zip(policies, folders)}
    report: dict[str, Any] = {
        "written": dt.datetime.now().isoformat(timespec="seconds"),
        "scoring": str(cfg.scoring),
        "use_cot": use_cot,
        "seed": cfg.seed,
        "max_prompts": cfg.max_prompts,
        "policies": [
            {
                "label": p.label,
                "source": p.source,
                "model_dir": str(p.model_dir),
                "version": p.version,
                "folder": str(f),
            }
            for p, f in zip(policies, folders)
        ],
        "benchmarks": {},
    }
    for bench, categories in cfg.selection().items():
        entry: dict[str, Any] = {
            "images_per_prompt": images_per_prompt(bench, cfg.images_per_prompt),
            "official_images_per_prompt": OFFICIAL_IMAGES_PER_PROMPT[bench],
            "categories": {},
            "overall": {},
            "published": [],
        }
        for cat in categories:
            cat_jobs = [j for j in jobs if j.item.benchmark == bench and j.item.category == cat]
            if not cat_jobs:
                continue
            passes = {p for j in cat_jobs for p in metric_of(j.item).passes(j.item)}
            tag, note = _fidelity(folders, passes)
            results = {}
            for label, scored in images.items():
                mine = [s for s in scored if s.job.item.benchmark == bench and s.job.item.category == cat]
                values = [s.score for s in mine if s.score is not None]
                results[label] = {"score": category_mean(values), "images": len(mine), "scored": len(values)}
            entry["categories"][cat] = {
                "metric": metric_of(cat_jobs[0].item).name,
                "fidelity": tag,
                "note": note,
                "prompts": len({j.item.prompt_index for j in cat_jobs}),
                "results": results,
            }
        for label, scored in images.items():
            done = [(s.job.item, s.score) for s in scored if s.job.item.benchmark == bench and s.score is not None]
            entry["overall"][label] = benchmark_overall(cfg, bench, done)
        entry["published"] = [
            {"name": r.name, "source": r.source, "values": r.values, "overall": r.overall}
            for r in published_rows(bench, str(cfg.wise_protocol))
        ]
        report["benchmarks"][bench] = entry
    return report


def _fmt(v: Optional[float]) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _caveats(cfg: EvalConfig, bench: str, entry: dict[str, Any]) -> list[str]:
    out = []
    if cfg.scoring == Scoring.embedded:
        out.append(
            "Scored by **embedded proxies** (rewards/ scorers that run with nothing downloaded), not by the "
            "benchmark's metrics: the published rows are there for scale only, never for comparison."
        )
    if cfg.max_prompts is not None:
        out.append(
            f"A prompt subset: the first {cfg.max_prompts} prompts of each category (eval.max_prompts); "
            "published numbers are over every prompt."
        )
    if entry["images_per_prompt"] != entry["official_images_per_prompt"]:
        out.append(
            f"{entry['images_per_prompt']} images per prompt (the benchmark's own: "
            f"{entry['official_images_per_prompt']})."
        )
    if any(c["fidelity"] == Fidelity.substitute for c in entry["categories"].values()):
        out.append(
            "Metrics tagged *substitute* run another model than the benchmark's: compare them only between "
            "runs of this harness."
        )
    return out


def render_markdown(
    cfg: EvalConfig, report: dict[str, Any], charts: dict[str, str], grids: dict[str, dict[str, str]]
) -> str:
    lines = [
        "# Evaluation report",
        "",
        f"Written {report['written']} by `python -m evaluation.run`.",
        "",
        "| policy | weights | policy version |",
        "| --- | --- | --- |",
    ]
    for p in report["policies"]:
        lines.append(f"| {p['label']} | `{p['model_dir']}` | {'' if p['version'] is None else p['version']} |")
    cot = (
        "with the semantic CoT (T2I-R1's way)" if report["use_cot"] else "without a CoT (the Janus-Pro baseline's way)"
    )
    lines += ["", f"Images drawn {cot}; image k of every prompt with seed {report['seed']} + k.", ""]
    for bench, entry in report["benchmarks"].items():
        cats = list(entry["categories"])
        lines += [f"## {TITLES[bench]}", ""]
        overall_name = next(iter(entry["overall"].values()))["name"] if entry["overall"] else "overall"
        head = [CATEGORY_TITLES.get(c, c) for c in cats] + [overall_name]
        lines += ["| | " + " | ".join(head) + " |", "| --- " * (len(head) + 1) + "|"]
        for p in report["policies"]:
            label = p["label"]
            vals = [_fmt(entry["categories"][c]["results"][label]["score"]) for c in cats]
            overall = _fmt(entry["overall"][label]["value"])
            lines.append(f"| **{label}** (ours) | " + " | ".join(vals) + f" | {overall} |")
        for r in entry["published"]:
            vals = [_fmt(r["values"].get(c)) for c in cats]
            lines.append(f"| {r['name']} (published) | " + " | ".join(vals) + f" | {_fmt(r['overall'])} |")
        lines += ["", "| category | metric | fidelity | prompts | images scored |", "| --- " * 5 + "|"]
        for c, cat in entry["categories"].items():
            counts = ", ".join(f"{k}: {v['scored']}/{v['images']}" for k, v in cat["results"].items())
            lines.append(
                f"| {CATEGORY_TITLES.get(c, c)} | `{cat['metric']}` | **{cat['fidelity'] or 'not scored'}** | "
                f"{cat['prompts']} | {counts} |"
            )
        notes = {(cat["metric"], cat["fidelity"]): cat["note"] for cat in entry["categories"].values() if cat["note"]}
        lines += [""] + [f"- `{metric}` ({tag}): {note}" for (metric, tag), note in notes.items()]
        lines += [f"- {c}" for c in _caveats(cfg, bench, entry)]
        lines += ["", f"![{TITLES[bench]}]({charts[bench]})", ""] if bench in charts else [""]
        if grids.get(bench):
            links = [f"[{CATEGORY_TITLES.get(c, c)}]({g})" for c, g in grids[bench].items()]
            lines.append("Samples: " + ", ".join(links))
            lines.append("")
    sources = sorted({f"{r['name']}: {r['source']}" for e in report["benchmarks"].values() for r in e["published"]})
    lines += ["## Sources of the published rows", ""] + [f"- {s}" for s in sources] + [""]
    return "\n".join(lines)


def _caption(label: str, s: Scored) -> str:
    return f"[{label} {_fmt(s.score)}] {s.job.item.prompt}" + (f" | CoT: {s.cot}" if s.cot else "")


def write_report(
    cfg: EvalConfig,
    use_cot: bool,
    policies: list[PolicyUnderTest],
    folders: list[Path],
    jobs: list[ImageJob],
    metric_of: Callable[[EvalItem], CategoryMetric],
) -> Path:
    """Write report.json, report.md, the charts and the grids into ``eval.output_dir``; returns report.md."""
    out = Path(cfg.output_dir).expanduser()
    report = build_report(cfg, use_cot, policies, folders, jobs, metric_of)
    charts, grids = {}, {}
    proxy = cfg.scoring == Scoring.embedded
    for bench, entry in report["benchmarks"].items():
        cats = list(entry["categories"])
        series = {
            f"{p['label']} (ours)": [entry["categories"][c]["results"][p["label"]]["score"] for c in cats]
            for p in report["policies"]
        }
        for r in entry["published"]:
            if r["values"]:
                series[f"{r['name']} (published)"] = [r["values"].get(c) for c in cats]
        note = "ours: embedded proxies, not the benchmark's metrics" if proxy else ""
        rel = f"charts/{bench}.png"
        bar_chart(out / rel, f"{TITLES[bench]}", [CATEGORY_TITLES.get(c, c) for c in cats], series, note)
        charts[bench] = rel
        grids[bench] = {}
        for cat in cats:
            cat_jobs = [j for j in jobs if j.item.benchmark == bench and j.item.category == cat]
            rows = []
            for p, folder in zip(policies, folders):
                shown = [s for s in scored_images(folder, cat_jobs, metric_of) if (folder / s.job.file).is_file()][
                    : cfg.grid_images
                ]
                rows.append([(decode_png((folder / s.job.file).read_bytes()), _caption(p.label, s)) for s in shown])
            rows = [r for r in rows if r]
            if rows and cfg.grid_images:
                rel = f"grids/{bench}_{cat}.png"
                sample_grid(out / rel, rows)
                grids[bench][cat] = rel
    atomic_write(out / "report.json", json.dumps(report, indent=1).encode())
    md = out / "report.md"
    atomic_write(md, render_markdown(cfg, report, charts, grids).encode())
    return md
