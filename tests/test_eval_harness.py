"""The evaluation harness end to end on the tiny Janus: the plan and the benchmarks' file layouts, generation on
rollout actors (resumable, a killed run continues), scoring on evaluator actors (a real evaluator class on a tiny
random model, and the embedded proxies), the report, the training-time hook, and every bad input a user can make.

The module shares one generated folder (two policies: the initial tiny Janus and a "trained" export of a run);
tests that damage it work on a copy.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import ConfigError, load_config
from core.images import decode_png
from core.records import PromptRecord
from evaluation.base import EvalItem
from evaluation.catalog import SelectionError, parse_selection
from evaluation.generate import GenerationMismatch, read_manifest
from evaluation.harness import prepare
from evaluation.local_files import MissingFilesError
from evaluation.passes import EvaluatorSetupError
from evaluation.plan import plan
from evaluation.run import EvalRunConfig, main
from evaluation.score import ScoringError, read_scores
from tests.tiny_eval_models import fake_wise_checkout
from tests.tiny_reward_models import tiny_clip_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # draws in this process match the actors' (1 thread)

REPO = Path(__file__).resolve().parents[1]
SELECTION = ["t2i_compbench/color", "t2i_compbench/non_spatial", "geneval/single_object", "geneval/colors"]
QUICK = [
    "rollout.cot.engine=transformers",
    "rollout.cot.max_new_tokens=4",
    "eval.max_prompts=2",
    "eval.images_per_prompt=2",
    "eval.batch_size=3",
]


def _overrides(tiny_model_cfg, shared_data, out: Path, *extra: str) -> list[str]:
    return [
        f"model.cache_dir={tiny_model_cfg.cache_dir}",
        f"eval.files.data_dir={shared_data}",
        f"eval.output_dir={out}",
        *QUICK,
        *extra,
    ]


def _cfg(tiny_model_cfg, shared_data, out: Path, *extra: str) -> EvalRunConfig:
    return load_config(EvalRunConfig, None, _overrides(tiny_model_cfg, shared_data, out, *extra), partial=True)


@pytest.fixture(scope="module")
def trained_run(tiny_model_cfg, tmp_path_factory) -> Path:
    """A training run's output_dir as cluster.run leaves it: checkpoints/hf (here the tiny Janus with perturbed
    language-model weights) beside checkpoints/trainer_state.json."""
    from policy.model import load_policy

    run = tmp_path_factory.mktemp("runs") / "run"
    policy = load_policy(tiny_model_cfg)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if name.startswith("model.language_model."):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    export = run / "checkpoints" / "hf"
    policy.model.save_pretrained(export)
    policy.tokenizer.save_pretrained(export)
    (run / "checkpoints" / "trainer_state.json").write_text(json.dumps({"step": 6, "version": 7, "tag": "step_7"}))
    return run


@pytest.fixture(scope="module")
def generated(ray_local, tiny_model_cfg, shared_data, trained_run, tmp_path_factory) -> Path:
    """`python -m evaluation.run` (in this process, on the session's Ray) drawing SELECTION for both policies."""
    out = tmp_path_factory.mktemp("eval")
    assert (
        main(
            _overrides(
                tiny_model_cfg,
                shared_data,
                out,
                f"eval.benchmarks=[{','.join(SELECTION)}]",
                f"eval.policies=[model,{trained_run}]",
                "eval.stages=[generate]",
            )
        )
        == 0
    )
    return out


def _png_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))


# ------------------------------------------------------------------------------------------------ plan, config


def test_plan_lays_images_out_as_each_benchmark_names_them(shared_data, tmp_path):
    compbench = [
        line.split("\t")[0].strip()
        for line in (shared_data / "t2i_compbench" / "color_val.txt").read_text().splitlines()
        if line.strip()
    ]
    metadata = [
        json.loads(line)
        for line in (shared_data / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines()
        if line.strip()
    ]
    first_colors = [i for i, row in enumerate(metadata) if row["tag"] == "colors"][:2]
    wise = fake_wise_checkout(tmp_path / "WISE")
    folders = {"t2i_compbench": shared_data / "t2i_compbench", "geneval": shared_data / "geneval", "wise": wise}
    jobs = plan(
        {"t2i_compbench": ["color"], "geneval": ["colors"], "wise": ["Time", "Physics"]},
        folders,
        n_override=None,
        max_prompts=2,
        seed=42,
    )
    files = [(j.file, j.seed) for j in jobs]
    # CompBench: 10 images per prompt, a counter over the category (prompt i owns k = 10 i .. 10 i + 9), seeds 42 + s
    assert files[:20] == [
        (f"t2i_compbench/color/samples/{compbench[i]}_{10 * i + s:06d}.png", 42 + s)
        for i in range(2)
        for s in range(10)
    ]
    # GenEval: 4 images per prompt, under the prompt's line number in evaluation_metadata.jsonl
    assert files[20:28] == [(f"geneval/{i:05d}/samples/{s:05d}.png", 42 + s) for i in first_colors for s in range(4)]
    assert jobs[20].item.metadata == metadata[first_colors[0]]
    # WISE: one image per prompt, named by prompt_id (WISE_Verified: Time is 401-520, Physics 761-880)
    assert files[28:] == [("wise/401.png", 42), ("wise/761.png", 42)]


def test_unknown_benchmarks_and_categories_suggest_the_closest_name():
    with pytest.raises(SelectionError, match=r"unknown benchmark 'genevel'.*did you mean 'geneval'\?"):
        parse_selection(["genevel"])
    with pytest.raises(SelectionError, match=r"unknown t2i_compbench category 'colour'.*did you mean 'color'\?"):
        parse_selection(["t2i_compbench/colour"])
    assert parse_selection(["geneval/position", "t2i_compbench/shape", "geneval/colors"]) == {
        "t2i_compbench": ["shape"],
        "geneval": ["colors", "position"],
    }
    with pytest.raises(ConfigError, match=r"eval\.benchmarks: unknown benchmark 'wies'.*did you mean 'wise'"):
        load_config(EvalRunConfig, None, ["eval.benchmarks=[wies]"], partial=True)
    with pytest.raises(ConfigError, match=r"eval\.scoring: WISE has no embedded proxy"):
        load_config(EvalRunConfig, None, ["eval.benchmarks=[wise]"], partial=True)
    with pytest.raises(ConfigError, match=r"unknown key 'eval\.max_prompt'.*did you mean 'eval\.max_prompts'"):
        load_config(EvalRunConfig, None, ["eval.max_prompt=3"], partial=True)


# ------------------------------------------------------------------------------------------------ bad input


def test_missing_files_fail_before_anything_runs_naming_path_files_and_source(tiny_model_cfg, shared_data, tmp_path):
    def setup(*extra):
        cfg = _cfg(tiny_model_cfg, shared_data, tmp_path / "out", *extra)
        return prepare(cfg.eval, cfg.model, cfg.rollout)

    official = ["eval.scoring=official", "eval.benchmarks=[t2i_compbench/non_spatial]"]
    with pytest.raises(
        EvaluatorSetupError,
        match=r"eval\.models\.clip_b32: the T2I-CompBench CLIPScore \(non-"
        r"spatial\) model directory is not set.*config\.json.*"
        r"openai/clip-vit-base-patch32",
    ):
        setup(*official)
    with pytest.raises(
        EvaluatorSetupError,
        match=rf"eval\.models\.clip_b32: .*'{tmp_path}/nowhere' does not exist"
        r".*huggingface-cli download openai/clip-vit-base-patch32",
    ):
        setup(*official, f"eval.models.clip_b32={tmp_path}/nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"color_val\.txt' not found.*github\.com/Karine-Huang/T2I-CompBench"):
        setup("eval.benchmarks=[t2i_compbench/color]", f"eval.files.t2i_compbench={empty}")
    with pytest.raises(
        MissingFilesError,
        match=r"GenEval prompts directory .*incomplete: missing "
        r"evaluation_metadata\.jsonl; object_names\.txt.*djghosh13/geneval",
    ):
        setup("eval.benchmarks=[geneval]", f"eval.files.geneval={empty}")
    wise = ["eval.scoring=official", "eval.benchmarks=[wise]", "eval.images_per_prompt=1"]
    with pytest.raises(MissingFilesError, match=r"WISE checkout .*is not set.*PKU-YuanGroup/WISE"):
        setup(*wise)
    with pytest.raises(
        MissingFilesError,
        match=r"WISE checkout .*incomplete: missing data_verified/"
        r"cultural_common_sense_verified\.json.*vllm_eval\.py",
    ):
        setup(*wise, f"eval.files.wise={empty}")
    # a complete checkout, but no judge
    with pytest.raises(EvaluatorSetupError, match=r"eval\.models\.wise_judge: .*Qwen/Qwen3\.5-35B-A3B"):
        setup(*wise, f"eval.files.wise={fake_wise_checkout(tmp_path / 'WISE')}")
    # UniDet's labels are checked with the detector
    with pytest.raises(EvaluatorSetupError, match=r"eval\.models\.grounding_dino"):
        setup("eval.scoring=official", "eval.benchmarks=[t2i_compbench/spatial]")


def test_command_line_errors_are_one_line(tiny_model_cfg, shared_data, tmp_path, capsys):
    assert main(_overrides(tiny_model_cfg, shared_data, tmp_path, "eval.benchmarks=[t2i_compbench/colour]")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: eval.benchmarks: unknown t2i_compbench category 'colour'") and err.count("\n") == 1
    assert main(_overrides(tiny_model_cfg, shared_data, tmp_path, f"eval.policies=[{tmp_path}]")) == 2
    assert "is neither an HF-format Janus directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ generation


def test_generation_writes_the_official_layout_and_a_complete_manifest(generated, shared_data, trained_run):
    cfg = load_config(
        EvalRunConfig,
        None,
        [f"eval.benchmarks=[{','.join(SELECTION)}]", *QUICK, f"eval.files.data_dir={shared_data}"],
        partial=True,
    )
    jobs = plan(cfg.eval.selection(), {b: cfg.eval.files.path(b) for b in cfg.eval.selection()}, 2, 2, 42)
    assert sorted(p.name for p in generated.iterdir()) == ["initial", "run"]
    for label, version in (("initial", 0), ("run", 7)):
        folder = generated / label
        assert _png_files(folder) == sorted(j.file for j in jobs)  # every planned image, nothing else
        rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
        assert [r["file"] for r in rows] == [j.file for j in jobs]
        for row, job in zip(rows, jobs):
            assert (row["prompt"], row["seed"], row["benchmark"], row["category"]) == (
                job.item.prompt,
                job.seed,
                job.item.benchmark,
                job.item.category,
            )
            assert row["policy_version"] == version and row["cot"]
            assert decode_png((folder / row["file"]).read_bytes()).shape == (16, 16, 3)
        for job in jobs:
            if job.item.benchmark == "geneval":  # the record the official evaluator reads beside the samples
                meta = (folder / f"geneval/{job.item.prompt_index:05d}/metadata.jsonl").read_text()
                assert json.loads(meta) == job.item.metadata
    initial, run = read_manifest(generated / "initial"), read_manifest(generated / "run")
    assert all(initial[f]["sha1"] != run[f]["sha1"] for f in initial)  # two different policies drew them


def test_an_image_is_its_seeds_alone(generated, tiny_model_cfg):
    """Image s of a prompt, drawn alone in this process with seed 42 + s, is the file the actors wrote."""
    from rollout.worker import RolloutWorker

    cfg = load_config(EvalRunConfig, None, [f"model.cache_dir={tiny_model_cfg.cache_dir}", *QUICK], partial=True)
    worker = RolloutWorker(cfg.model, cfg.rollout)
    rows = list(read_manifest(generated / "initial").values())
    for row in (rows[1], rows[-1]):
        (sample,) = worker.draw([PromptRecord(prompt=row["prompt"])], [row["seed"]])
        assert decode_png((generated / "initial" / row["file"]).read_bytes()).tobytes() == sample.image.tobytes()
        assert sample.cot_text == row["cot"]


def test_a_rerun_redraws_corrupt_and_missing_images_and_refuses_other_settings(
    generated, tiny_model_cfg, shared_data, tmp_path
):
    out = tmp_path / "eval"
    shutil.copytree(generated / "initial", out / "initial")
    folder = out / "initial"
    rows = list(read_manifest(folder).values())
    corrupt, missing = folder / rows[0]["file"], folder / rows[5]["file"]
    before = corrupt.read_bytes()
    corrupt.write_bytes(before[:40])
    missing.unlink()
    cfg = _cfg(tiny_model_cfg, shared_data, out, f"eval.benchmarks=[{','.join(SELECTION)}]")
    ev = prepare(cfg.eval, cfg.model, cfg.rollout)
    (result,) = ev.generate().values()
    assert (result.drawn, result.kept, sorted(result.redrawn)) == (
        2,
        len(rows) - 2,
        sorted([rows[0]["file"], rows[5]["file"]]),
    )
    assert corrupt.read_bytes() == before  # the same image: it was drawn again with its own seed
    assert [r["file"] for r in read_manifest(folder).values()] == [r["file"] for r in rows]
    assert _png_files(folder) == sorted(r["file"] for r in rows)
    # the same folder with other sampling settings: refused, with the difference named
    other = _cfg(
        tiny_model_cfg, shared_data, out, f"eval.benchmarks=[{','.join(SELECTION)}]", "rollout.image.cfg_weight=3.0"
    )
    with pytest.raises(GenerationMismatch, match=r"image\.cfg_weight: 5\.0 -> 3\.0.*Use another eval\.output_dir"):
        prepare(other.eval, other.model, other.rollout).generate()
    # scoring an image that changed after generation: a clear error, not a silent score
    corrupt.write_bytes(before[:40])
    scoring = _cfg(tiny_model_cfg, shared_data, out, f"eval.benchmarks=[{','.join(SELECTION)}]", "eval.stages=[score]")
    with pytest.raises(ScoringError, match="changed since it was generated"):
        prepare(scoring.eval, scoring.model, scoring.rollout).score()


@pytest.mark.slow
def test_a_killed_generation_continues_where_it_stopped(ray_local, tiny_model_cfg, shared_data, tmp_path):
    """`python -m evaluation.run` as its own process (with its own Ray), SIGKILLed with its Ray once some images
    are written; the rerun draws the rest: every planned file exactly once, the manifest complete and in order,
    the images those of an uninterrupted run (each is its seed's alone)."""
    out = tmp_path / "eval"
    args = _overrides(
        tiny_model_cfg,
        shared_data,
        out,
        "eval.benchmarks=[t2i_compbench/color]",
        "eval.max_prompts=10",
        "eval.batch_size=2",
        "eval.stages=[generate]",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "evaluation.run", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    manifest = out / "initial" / "manifest.jsonl"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.is_file() and len(manifest.read_text().splitlines()) >= 4:
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started
        proc.wait()
    kept = len(manifest.read_text().splitlines())
    assert 4 <= kept < 20, f"the run was to be killed half-way: {kept} images in the manifest"

    cfg = load_config(EvalRunConfig, None, args, partial=True)
    ev = prepare(cfg.eval, cfg.model, cfg.rollout)
    (result,) = ev.generate().values()
    assert result.kept in (kept, kept - 1) and result.drawn == 20 - result.kept  # the last line may be partial
    planned = [j.file for j in ev.jobs]
    assert _png_files(out / "initial") == sorted(planned) and not list(out.rglob(".*.tmp*"))
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["file"] for r in rows] == planned
    from rollout.worker import RolloutWorker

    worker = RolloutWorker(cfg.model, cfg.rollout)
    for row in (rows[0], rows[-1]):  # one from the killed run, one from the rerun
        (sample,) = worker.draw([PromptRecord(prompt=row["prompt"])], [row["seed"]])
        assert decode_png((out / "initial" / row["file"]).read_bytes()).tobytes() == sample.image.tobytes()


# ------------------------------------------------------------------------------------------------ scoring, report


def _images_and_items(folder: Path, category: str) -> tuple[list[np.ndarray], list[EvalItem], list[str]]:
    rows = [r for r in read_manifest(folder).values() if r["category"] == category]
    items = [EvalItem(r["benchmark"], r["category"], r["prompt"], r["prompt_index"], r["sample_index"]) for r in rows]
    return [decode_png((folder / r["file"]).read_bytes()) for r in rows], items, [r["file"] for r in rows]


def test_a_real_evaluator_scores_through_the_score_stage_and_the_report(
    generated, tiny_model_cfg, shared_data, trained_run, tmp_path
):
    """CompBench non-spatial by ClipScoreEvaluator on a tiny random CLIP, through its Ray actor, against the same
    evaluator called directly; a scoring run cut short continues; the report's rows are the images' means."""
    from evaluation.compbench.clipscore import ClipScoreEvaluator

    out = tmp_path / "eval"
    for label in ("initial", "run"):
        shutil.copytree(generated / label, out / label)
    clip = tiny_clip_dir(tmp_path / "clip")
    cfg = _cfg(
        tiny_model_cfg,
        shared_data,
        out,
        "eval.benchmarks=[t2i_compbench/non_spatial]",
        "eval.scoring=official",
        f"eval.models.clip_b32={clip}",
        f"eval.policies=[model,{trained_run}]",
        "eval.scorer.batch_size=3",
        "eval.stages=[score,report]",
    )
    ev = prepare(cfg.eval, cfg.model, cfg.rollout)
    assert ev.score() == {"clipscore": 8}
    direct = ClipScoreEvaluator.load(clip)
    for label in ("initial", "run"):
        images, items, files = _images_and_items(out / label, "non_spatial")
        want = [r.score for r in direct.score(images, items)]
        rows = read_scores(out / label, "clipscore")
        got = [next(r["score"] for (f, _), r in rows.items() if f == file) for file in files]
        np.testing.assert_allclose(got, want, atol=1e-5)
    # killed mid-scoring: the last batch's rows lost, a partial line left behind
    log = out / "initial" / "scores" / "clipscore.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[1][:25])
    assert ev.score() == {"clipscore": 3}
    assert sorted(json.loads(line)["file"] for line in log.read_text().splitlines()) == sorted(files)
    assert ev.score() == {}  # nothing scored twice

    report_md = ev.report()
    report = json.loads((out / "report.json").read_text())
    cat = report["benchmarks"]["t2i_compbench"]["categories"]["non_spatial"]
    assert (cat["metric"], cat["fidelity"]) == ("clipscore", "exact") and "fp16" in cat["note"]
    for label in ("initial", "run"):
        mean = np.mean([r["score"] for r in read_scores(out / label, "clipscore").values()])
        assert cat["results"][label] == {"score": pytest.approx(mean), "images": 4, "scored": 4}
    assert [p["version"] for p in report["policies"]] == [None, 7]
    md = report_md.read_text()
    assert "| **run** (ours) |" in md and "| Janus-Pro-7B (published) | 0.3085 |" in md and "**exact**" in md
    with Image.open(out / "charts" / "t2i_compbench.png") as im:
        assert im.size[0] > 300
    with Image.open(out / "grids" / "t2i_compbench_non_spatial.png") as im:
        assert im.size == (4 * 192, 2 * (192 + 81))  # a row of 4 samples (eval.grid_images) per policy


def test_embedded_proxies_score_colour_and_objects(generated, tiny_model_cfg, shared_data, tmp_path):
    from rewards.scorers.color import ColorScorer

    out = tmp_path / "eval"
    shutil.copytree(generated / "initial", out / "initial")
    cfg = _cfg(
        tiny_model_cfg, shared_data, out, f"eval.benchmarks=[{','.join(SELECTION)}]", "eval.stages=[score,report]"
    )
    ev = prepare(cfg.eval, cfg.model, cfg.rollout)
    # 2 prompts x 2 images each; colour: CompBench colour, GenEval colours; objects: the other two
    assert ev.score() == {"color@embedded": 8, "objects@embedded": 8}
    images, items, files = _images_and_items(out / "initial", "color")
    rows = read_scores(out / "initial", "color@embedded")
    for image, item, file in zip(images, items, files):
        (want,) = ColorScorer().score(PromptRecord(item.prompt), [image])
        assert next(r["score"] for (f, _), r in rows.items() if f == file) == pytest.approx(want.score)
    objects = {f: r for (f, _), r in read_scores(out / "initial", "objects@embedded").items()}
    # GenEval's objects are its include classes: "a photo of a bench" asks for the ImageNet park bench
    bench = objects["geneval/00000/samples/00000.png"]
    assert bench["details"]["classes"] == {"bench": {"park bench": pytest.approx(0.74, abs=0.01)}}
    assert bench["score"] == pytest.approx(bench["details"]["presence"]["bench"], abs=1e-6) and 0 < bench["score"] < 1
    # CompBench's are the prompt's nouns; none of these has an ImageNet class: 0 (the scorer's rule)
    person = next(r for f, r in objects.items() if "rainbow" in f)
    assert person["score"] == 0.0 and person["details"]["unmatched_nouns"] == [
        "person",
        "rainbow",
        "marveling",
        "beauty",
    ]
    ev.report()
    report = json.loads((out / "report.json").read_text())
    for bench, cat in (("t2i_compbench", "color"), ("t2i_compbench", "non_spatial"), ("geneval", "colors")):
        entry = report["benchmarks"][bench]["categories"][cat]
        assert entry["fidelity"] == "embedded-proxy" and "not the benchmark's metric" in entry["note"]
    assert "published rows are there for scale only" in (out / "report.md").read_text()


# ------------------------------------------------------------------------------------------------ training


def test_training_evaluation_draws_with_the_runs_actors_and_returns_metric_columns(
    ray_local, tiny_model_cfg, shared_data, tmp_path
):
    from evaluation.training import TrainingEvaluation
    from rollout.actor import create_rollout_actors

    cfg = _cfg(
        tiny_model_cfg,
        shared_data,
        tmp_path,
        "eval.during_training.max_prompts=3",
        "eval.during_training.benchmarks=[t2i_compbench/color,geneval/colors]",
    )
    hook = TrainingEvaluation(cfg.eval, cfg.rollout, tmp_path / "run", every=5)
    assert [s for s in range(1, 13) if hook.due(s)] == [5, 10]  # steps count from 1
    (actor,) = create_rollout_actors(cfg.model, cfg.rollout, count=1)
    try:
        row = hook.run([actor], step=4, version=5)
    finally:
        import ray

        ray.kill(actor)
    folder = tmp_path / "run" / "eval" / "step_000004"
    scores = {f: r["score"] for (f, _), r in read_scores(folder, "color@embedded").items()}
    manifest = read_manifest(folder)
    by_cat = {c: [s for f, s in scores.items() if manifest[f]["category"] == c] for c in ("color", "colors")}
    assert len(by_cat["color"]) == 3 and len(by_cat["colors"]) == 3  # 3 prompts x 1 image
    assert row == {
        "eval_t2i_compbench_color": pytest.approx(np.mean(by_cat["color"])),
        "eval_geneval_colors": pytest.approx(np.mean(by_cat["colors"])),
        "eval_geneval_overall": pytest.approx(np.mean(by_cat["colors"])),
    }
    assert all(math.isfinite(v) for v in row.values())


def test_eval_every_is_checked_with_the_training_config():
    from cluster.config import load_config as load_training

    cfg = load_training(None, ["trainer.eval_every=5"])
    assert cfg.trainer.eval_every == 5 and cfg.eval.during_training.benchmarks == ["t2i_compbench/color"]
    with pytest.raises(ConfigError, match=r"trainer\.eval_every: must be >= 0"):
        load_training(None, ["trainer.eval_every=-1"])
    with pytest.raises(
        ConfigError,
        match=r"eval\.during_training\.benchmarks: unknown t2i_compbench category "
        r"'colr'.*did you mean 'color'",
    ):
        load_training(None, ["eval.during_training.benchmarks=[t2i_compbench/colr]"])
