"""cluster.run end to end, as a user runs it: a subprocess that starts (or joins) a local Ray cluster on 127.0.0.1.

- the embedded default learns, trained by the README's `make run`: the mean reward of the last quarter of steps
  is clearly above the first quarter, and every output a user is promised exists;
- faults: a reward replica, a rollout worker and a learner rank killed mid-run, then the driver killed (its whole
  process group, Ray included); `resume=true` twice; the stitched run equals a straight run step by step;
- the README's Ray cluster section as written (token authentication, `ray start`, `ray job submit --working-dir
  .`, off-policy), with the README's `rewards.pool` commands run while the job runs and the per-step Ray metrics
  read from the node's metrics endpoint; then `resume=true` from a copy of the job's checkpoint of step 10
  reproduces its steps 11 and 12 (step 11 trained on the checkpoint's rollout in flight, one version behind);
- in both modes the PPO ratio is exactly 1 (one update per batch), and the importance weights are ~1 where the
  rollout was made by the learner's version and differ from 1 where it lags one version behind.

Every wait is bounded (a deadline kills the run's process group), every socket is on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.ports import free_ports
from tests.readme import script

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# three reward replicas would not fit 2 cores next to the learner and worker
QUICK = ["logging.image_every=2"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python`, `ray` of this venv
    env["PYTHONPATH"] = str(REPO)
    env.pop("RAY_ADDRESS", None)
    return env


class Run:
    """`python -m cluster.run ...` (or a shell command) in its own session (so the driver and the Ray cluster it
    starts can be killed together), its merged stdout/stderr read line by line; ``on`` registers an action for
    the first line that contains a text."""

    def __init__(self, out: Path, *overrides: str, timeout_s: float = 600, shell: str = ""):
        self.lines: list[str] = []
        self._actions: list[tuple[str, Callable[[Run], None]]] = []
        args = (
            ["bash", "-c", shell]
            if shell
            else [
                sys.executable,
                "-m",
                "cluster.run",
                f"output_dir={out}",
                f"cluster.dashboard_port={free_ports(1)[0]}",
                *overrides,
            ]
        )
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._timer = threading.Timer(timeout_s, self.kill_all)
        self._timer.start()

    def on(self, text: str, action: Callable[[Run], None]) -> Run:
        self._actions.append((text, action))
        return self

    def wait(self) -> int:
        for line in self.proc.stdout:
            self.lines.append(line)
            for i, (text, action) in enumerate(self._actions):
                if text in line:
                    self._actions.pop(i)
                    action(self)
                    break
        rc = self.proc.wait()
        self._timer.cancel()
        self.kill_all()  # leftovers of a killed driver (raylet, workers) share its session
        return rc

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def kill_all(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill_actor(self, class_name: str) -> None:
        """SIGKILL one Ray worker process of this run hosting an actor of ``class_name``."""
        import psutil

        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                title = " ".join(p.info["cmdline"] or [])
                if title.startswith(f"ray::{class_name}") and os.getsid(p.pid) == self.proc.pid:
                    p.kill()
                    return
            except (psutil.Error, ProcessLookupError):
                continue
        raise AssertionError(f"no process of an actor {class_name} found")


def _metrics(out: Path) -> list[dict]:
    return pq.read_table(out / "metrics.parquet").to_pylist()


def _rollout_rows(out: Path, step: int) -> list[dict]:
    return pq.read_table(out / "rollouts" / f"step_{step:06d}.parquet").to_pylist()


# library chatter that must stay off the console: vLLM's log prefix, progress bars, Ray's actor prefixes,
# DeepSpeed's log format, Ray's start-up notice
CHATTER = (
    "(MainProcess pid=",
    "it/s]",
    "(RolloutActor pid=",
    "(LearnerRank pid=",
    "(RewardServerActor pid=",
    "[logging.py:",
    "Started a local Ray instance",
)


def _check_what_a_user_sees(console: list[str], out: Path, steps: int, image_steps: list[int]) -> None:
    """A quiet console ending in the summary; the libraries' output in logs/; metrics.png; TensorBoard's events."""
    noisy = [line for line in console if any(c in line for c in CHATTER)]
    assert not noisy, f"library output on the console: {noisy[:5]}"
    assert any(line.startswith(f"summary: {steps} steps") for line in console)
    assert any(line.startswith(f"resume:   python -m cluster.run output_dir={out} resume=true") for line in console)
    actor_logs = "".join(f.read_text() for f in (out / "logs").glob("*.log"))
    assert "Initializing a V1 LLM engine" in actor_logs  # vLLM's output, kept in the run's logs/
    assert (out / "logs" / "rollout-worker-0.log").is_file() and (out / "logs" / "learner-rank-0.log").is_file()
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    rows = _metrics(out)
    reward = events.Scalars("reward/reward_mean")
    assert [e.step for e in reward] == list(range(1, steps + 1))
    np.testing.assert_allclose([e.value for e in reward], [r["reward_mean"] for r in rows], rtol=1e-6)
    assert [e.step for e in events.Scalars("seconds/learner_s")] == list(range(1, steps + 1))
    assert [e.step for e in events.Images("rollouts/grid")] == image_steps


# ------------------------------------------------------------------------------------------------ it learns


def test_embedded_default_learns_and_writes_every_output(tmp_path):
    out = tmp_path / "run"
    # the README's `make run`: the embedded default, 40 steps, plus an evaluation every 20 steps
    (make_run,) = script("two-commands", out=str(out))
    run = Run(out, shell=make_run)
    assert run.wait() == 0, run.log[-5000:]
    rows = _metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 41))  # steps count from 1
    rewards = np.array([r["reward_mean"] for r in rows])
    first, last = rewards[:10].mean(), rewards[-10:].mean()
    # the default seed 0, as a user runs it (LEARNING.md; the same to the last digit on a rerun): 0.267 -> 0.642,
    # 2.41 x (seeds 0-9: 1.67-2.41 x). A policy that does not learn (learner.optim.lr=1e-12) on the same prompts and
    # sampling seeds: 0.253 -> 0.248, 0.98 x, so the 1.5 x takes learning
    assert last >= 1.5 * first, f"no learning: first quarter {first:.3f}, last quarter {last:.3f}"

    for key in (
        "reward_mean",
        "reward_color_mean",
        "reward_color_std",
        "kl",
        "loss",
        "cot_tokens_mean",
        "rollout_s",
        "reward_s",
        "learner_s",
        "sync_s",
        "images_per_s",
        "version_lag_mean",
    ):
        assert all(np.isfinite(r[key]) for r in rows), key
    for part in ("encode", "wire", "queue", "decode", "score"):  # where the reward calls' time went
        assert all(r[f"reward_color_{part}_s"] >= 0 for r in rows), part
    assert [r["policy_version"] for r in rows] == list(range(1, 41))
    # sync, one update per batch: the ratio is exactly 1, and the rollout engines (vLLM for the CoT, our sampler for
    # the image) agree with the learner up to float32 rounding (measured: gaps <= 2e-6), so the weights are ~1
    for r in rows:
        for lv in ("semantic", "token"):
            assert r[f"{lv}/ratio_mean"] == 1.0 and r[f"{lv}/no_behaviour_frac"] == 0.0, r
            assert r[f"{lv}/logp_gap_max"] < 1e-4 and abs(r[f"{lv}/is_weight_mean"] - 1) < 1e-4, r
    assert [line.split()[1] for line in run.lines if line.startswith("step ")] == [f"{t}/40" for t in range(1, 41)]
    assert "Ray dashboard: http://127.0.0.1:" in run.log and f"images: {out / 'images'}" in run.log
    assert "checkpoint of step 40" in (out / "logs" / "driver.log").read_text()
    assert (out / "checkpoints" / "learner" / "step_40").is_dir()  # the checkpoint of step 40, by the same number

    roll = _rollout_rows(out, 40)
    assert len(roll) == 128 and {"prompt", "cot", "image_file", "reward_color", "advantage", "policy_version"} <= set(
        roll[0]
    )
    assert all((out / r["image_file"]).is_file() for r in roll)
    for g in range(0, 128, 8):  # group z-scores: each group's advantages sum to 0
        assert abs(sum(r["advantage"] for r in roll[g : g + 8])) < 1e-4
    assert (out / "images" / "step_000001.png").is_file() and (out / "images" / "step_000040.png").is_file()

    # trainer.eval_every: after steps 20 and 40, eval.during_training (4 CompBench colour prompts) on the weights of
    # that step, drawn by the run's rollout worker; the column is the mean of the images' scores
    logged = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert [s for s, r in logged.items() if "eval_t2i_compbench_color" in r] == [20, 40]
    for step in (20, 40):
        scores = out / "eval" / f"step_{step:06d}" / "scores" / "color@embedded.jsonl"
        values = [json.loads(line)["score"] for line in scores.read_text().splitlines()]
        assert len(values) == 4 and logged[step]["eval_t2i_compbench_color"] == pytest.approx(np.mean(values))

    from transformers import JanusForConditionalGeneration

    assert (out / "checkpoints" / "trainer_state.json").is_file()
    model = JanusForConditionalGeneration.from_pretrained(out / "checkpoints" / "hf")
    assert sum(p.numel() for p in model.parameters()) > 0
    _check_what_a_user_sees(run.lines, out, 40, [1, 5, 10, 15, 20, 25, 30, 35, 40])


# ------------------------------------------------------------------------------------------------ faults


def test_faults_and_resume_give_the_straight_run(tmp_path):
    # the transformers text engine: 4 start-ups and a worker restart without loading vLLM (the other tests use it)
    common = [
        *QUICK,
        "rollout.cot.engine=transformers",
        "trainer.steps=6",
        "trainer.save_every=2",
        "rewards.color.replicas=2",
        "rewards.color.num_cpus=0.1",
    ]
    straight = tmp_path / "straight"
    assert Run(straight, *common).wait() == 0

    out = tmp_path / "faults"
    first = (
        Run(out, *common)
        .on("step 1/6", lambda r: r.kill_actor("RewardServerActor"))
        .on("step 2/6", lambda r: r.kill_actor("RolloutActor"))
        .on("checkpoint of step 4", lambda r: r.kill_actor("LearnerRank"))
    )
    assert first.wait() != 0
    assert "resume=true" in first.log and "a learner rank died" in first.log
    # the killed reward replica was replaced and the killed rollout worker restarted and re-synced
    assert "reward replicas that died were replaced" in first.log
    assert "rollout worker 0" in first.log and "redoing its 16 prompts" in first.log

    # resumed as the README shows it: the run's saved config.yaml is reloaded, nothing else need be repeated
    second = Run(out, "resume=true").on("step 5/6", lambda r: r.kill_all())  # the driver dies
    second.wait()
    assert "resumed from the checkpoint of step 4" in second.log
    third = Run(out, "resume=true")
    assert third.wait() == 0, third.log[-5000:]
    assert "resumed from the checkpoint of step 4" in third.log

    # nothing lost, nothing counted twice, same data order, same results as the run without faults
    rows, ref = _metrics(out), _metrics(straight)
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert max(r["rollout_worker_restarts"] for r in rows) >= 1
    # the replica killed after step 1 was still listed when step 2 was scored: its calls went to the other one
    assert rows[1]["reward_color_retries"] > 0 and rows[0]["reward_color_retries"] == 0
    assert all(r["reward_color_retries"] == 0 for r in ref)
    for step in range(1, 7):
        got, want = _rollout_rows(out, step), _rollout_rows(straight, step)
        assert [(r["prompt_index"], r["group_index"]) for r in got] == [
            (r["prompt_index"], r["group_index"]) for r in want
        ]
        np.testing.assert_allclose(
            [r["reward"] for r in got], [r["reward"] for r in want], atol=1e-6, err_msg=f"step {step}"
        )
    np.testing.assert_allclose([r["loss"] for r in rows], [r["loss"] for r in ref], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------------ ray job submit


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (Ray renames its processes, so names cannot find them)."""
    import psutil

    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                p.kill()
        except (psutil.Error, ProcessLookupError):
            continue


def test_ray_cluster_section_with_token_auth_and_the_reward_fleet(tmp_path):
    """The README's cluster section as one shell script, in a session of its own (`ray start` leaves the head's
    processes in it, so the test can stop exactly those; `ray stop` would stop every Ray on the machine)."""
    home = tmp_path / "home"  # the token Ray makes and the job's default output_dir: never the real home's
    home.mkdir()
    fork = tmp_path / "resumed"  # the job's run as a run stopped right after its checkpoint of step 10 leaves it
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    names = ("gcs", "dashboard", "metrics", "agent", "client")
    ports = dict(zip(names, map(str, free_ports(len(names)))))
    commands = script("ray-cluster", temp=temp, **ports)
    env = _env()
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):  # only what the README sets
        env.pop(k, None)
    env.update(
        HOME=str(home),
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # loopback only
        RAY_metrics_report_interval_ms="500",
    )  # gauges reach the endpoint within a step
    head = subprocess.Popen(
        ["bash", "-c", "set -euo pipefail\n" + "\n".join(commands)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    timer = threading.Timer(600, _kill_session, (head.pid,))
    timer.start()
    fork_copy = _CopyAtCheckpoint(home / "t2i-r1-ray" / "outputs" / "run", fork, step=10)
    lines, seen, fleet, actors = [], "", None, set()
    try:
        for line in head.stdout:  # the job's log, as `ray job submit` streams it
            lines.append(line)
            if line.startswith("step 1/") and fleet is None:
                # the README's reward-fleet commands, from another shell while the job runs: the README exports
                # RAY_AUTH_MODE in every shell; RAY_ADDRESS is how `--address auto` finds this cluster and no other
                exports = [c for c in commands if c.startswith("export ")]
                fleet = subprocess.run(
                    ["bash", "-c", "set -euo pipefail\n" + "\n".join(exports + script("reward-fleet"))],
                    cwd=tmp_path,
                    env={**env, "RAY_ADDRESS": f"127.0.0.1:{ports['gcs']}"},
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            if line.startswith("step ") and "t2i_reward_mean" not in seen:  # gauges live with the job's driver
                seen = _scrape(int(ports["metrics"]))
            if line.startswith("step 2/") and not actors:  # the dashboard's Actors view: the system by name
                exports = [c for c in commands if c.startswith("export ")]
                listed = subprocess.run(
                    ["bash", "-c", "\n".join(exports + ["ray list actors --format=json --filter state=ALIVE"])],
                    env={**env, "RAY_ADDRESS": f"127.0.0.1:{ports['gcs']}"},
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                actors = {a["name"] for a in json.loads(listed.stdout or "[]")} or {listed.stderr[-500:]}
        rc = head.wait()
    finally:
        timer.cancel()
        fork_copy.stop()
        _kill_session(head.pid)
        shutil.rmtree(temp, ignore_errors=True)
    log = "".join(lines)
    assert fork_copy.outcome == "copied", fork_copy.outcome
    assert rc == 0 and "succeeded" in log, log[-5000:]
    assert fleet is not None and fleet.returncode == 0, (fleet.stdout + fleet.stderr) if fleet else log[-5000:]
    status, scaled = fleet.stdout.splitlines()
    assert status.startswith("color: 1 replica(s)") and scaled.startswith("color: 2 replica(s)"), fleet.stdout

    # inside the job, the default relative output_dir went to a durable place, and the job said where
    out = home / "t2i-r1-ray" / "outputs" / "run"
    assert f"output dir: {out}" in log
    rows = _metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 13))
    # off-policy: the first rollout is on-policy, each later one was made by the weights one update behind
    assert [r["version_lag_mean"] for r in rows] == [0] + [1] * 11
    assert all(r["rollout_wait_s"] is not None for r in rows[:11])
    assert "t2i_reward_mean" in seen, "per-step gauges not on the node's metrics endpoint"
    # the scale-up reached the job between two steps: its log says so and the metrics count the replicas
    replicas = [r["reward_color_replicas"] for r in rows]
    first_two = replicas.index(2)
    assert replicas == [1] * first_two + [2] * (12 - first_two) and first_two >= 1, replicas
    assert f"reward replicas changed for step {first_two + 1}: color 1 -> 2" in log
    assert {"learner-rank-0", "rollout-worker-0"} <= actors, actors
    assert any(a.endswith("/reward-color-replica-0") for a in actors), actors
    assert "token authentication is on: paste the token from" in log  # how to open the dashboard

    # one update per batch: the ratio is exactly 1; the importance weights correct the lag of steps 3-12, where the
    # rollout's log-probs are a version behind: far larger gaps than the engines' mismatch alone at step 1 (step 2's
    # rollout is a version behind too, but the warm-up's first step, at learning rate 0, left the weights as they were)
    assert all(r[f"{lv}/ratio_mean"] == 1.0 for r in rows for lv in ("semantic", "token"))
    for r in rows[2:]:
        assert r["token/logp_gap_mean"] > 10 * rows[0]["token/logp_gap_mean"], (r, rows[0])
        assert abs(r["token/is_weight_mean"] - 1) > 1e-4 and r["token/no_behaviour_frac"] == 0.0, r

    # resumed from the checkpoint of step 10, the run trains step 11 on the rollout the job made by version 9 while
    # step 10 trained (on main the resumed step was on-policy), and reproduces steps 11 and 12
    resumed = Run(fork, "resume=true")
    assert resumed.wait() == 0, resumed.log[-5000:]
    assert "the first step trains on the checkpoint's rollout in flight (made by version 9)" in resumed.log
    again = _metrics(fork)
    assert [r["step"] for r in again] == list(range(1, 13)) and [r["version_lag_mean"] for r in again[10:]] == [1, 1]
    for step in (11, 12):
        got, want = _rollout_rows(fork, step), _rollout_rows(out, step)
        assert [(r["prompt_index"], r["cot"], r["policy_version"]) for r in got] == [
            (r["prompt_index"], r["cot"], r["policy_version"]) for r in want
        ]
        np.testing.assert_allclose([r["reward"] for r in got], [r["reward"] for r in want], atol=1e-6)
    for key in ("loss", "token/is_weight_mean", "token/logp_gap_mean", "semantic/is_weight_mean"):
        np.testing.assert_allclose(
            [r[key] for r in again[10:]], [r[key] for r in rows[10:]], rtol=1e-4, atol=1e-7, err_msg=key
        )


class _CopyAtCheckpoint:
    """Copies what a run stopped right after its checkpoint of ``step`` leaves for resume=true (its config,
    checkpoints and metric rows), as soon as the run's trainer_state.json says that checkpoint landed: the state
    file is written last, after the step's outputs are flushed. Watching the file, not the job's log: the log
    reaches the test later than the next steps take (under a second each), and the run's last checkpoint would
    replace this one first."""

    def __init__(self, out: Path, fork: Path, step: int):
        self.out, self.fork, self.step = out, fork, step
        self.outcome = "not copied: the run never checkpointed"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _state(self, checkpoints: Path) -> dict | None:
        try:
            return json.loads((checkpoints / "trainer_state.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            state = self._state(self.out / "checkpoints")
            if state is None or state["step"] < self.step:
                continue
            if state["step"] == self.step:
                shutil.copytree(self.out / "checkpoints", self.fork / "checkpoints")
                for name in ("config.yaml", "metrics.jsonl"):
                    shutil.copy(self.out / name, self.fork / name)
            copied = self._state(self.fork / "checkpoints")
            self.outcome = "copied" if copied and copied["step"] == self.step else f"copied too late: {state}"
            return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
