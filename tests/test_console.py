"""What reaches the console from the actors: our warnings and Ray's notices; everything else goes to one file per
actor under the run's logs/ (the whole-run check is in tests/test_cluster.py)."""

from __future__ import annotations

import io
import logging

from cluster.console import OUR_LOGGERS, WORKER_FORMAT, WorkerOutput, configure_worker_logging, dashboard_line


def _batch(pid, name, *lines, is_err=True):
    return {"pid": pid, "actor_name": name, "lines": list(lines), "is_err": is_err, "ip": "127.0.0.1"}


def _our_warning_line() -> list[str]:
    """A warning of ours as a worker process prints it (a second path: the handler configure_worker_logging sets).
    The loggers are restored afterwards: in this (pytest) process later tests read our records at the root."""
    loggers = [logging.getLogger(name) for name in OUR_LOGGERS]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    try:
        configure_worker_logging()
        stream = io.StringIO()
        handler = logging.getLogger("rollout").handlers[-1]
        handler.setStream(stream)
        logging.getLogger("rollout.factories").warning("vLLM text engine unavailable, falling back to transformers")
        logging.getLogger("rollout.worker").info("loaded")  # INFO: to the file only
        return stream.getvalue().splitlines()
    finally:
        for lg, handlers, level, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


def test_only_our_warnings_and_ray_notices_reach_the_console(tmp_path, ray_local):  # Ray: its autoscaler filter
    warning, info = _our_warning_line()
    assert warning == "[t2i] WARNING rollout.factories: vLLM text engine unavailable, falling back to transformers"
    assert WORKER_FORMAT.startswith("[t2i] ")
    console = io.StringIO()
    out = WorkerOutput(tmp_path, verbose=False, console=console)
    vllm = "(MainProcess pid=7) INFO 11-29 13:13:43 [core.py:133] Initializing a V1 LLM engine (v0.32.0)"
    bar = "Loading weights: 100%|##########| 234/234"
    out.handle(_batch(7, "RolloutActor", bar, vllm))  # the constructor: Ray names the actor by its class
    out.handle(_batch(7, "rollout-worker-0", warning, info))  # then by its repr
    out.handle(_batch(9, "learner-rank-0", "[2026-11-29 13:13:44] [INFO] [logging.py:107] DeepSpeed info"))
    out.handle({"pid": "raylet", "lines": ["A worker died or was killed while executing a task"], "is_err": False})
    out.handle({"pid": "autoscaler", "lines": ["======== Autoscaler status ========", "Node status"], "is_err": False})
    out.close()

    shown = console.getvalue().splitlines()
    assert shown == [
        "(rollout-worker-0) WARNING rollout.factories: vLLM text engine unavailable, falling back to transformers",
        "(ray) A worker died or was killed while executing a task",
    ]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["learner-rank-0.log", "ray.log", "rollout-worker-0.log"]  # RolloutActor.log followed its actor
    worker_log = (tmp_path / "rollout-worker-0.log").read_text().splitlines()
    assert worker_log == [f"(pid=7) {line}" for line in (bar, vllm, warning, info)]
    assert "Autoscaler status" in (tmp_path / "ray.log").read_text()


def test_verbose_leaves_the_console_to_ray_and_still_writes_the_files(tmp_path):
    console = io.StringIO()
    out = WorkerOutput(tmp_path, verbose=True, console=console)
    out.handle(_batch(7, "rollout-worker-0", "[t2i] WARNING rollout.x: w", "chatter"))
    out.close()
    assert console.getvalue() == ""  # Ray's own printer, left installed, shows every line
    assert (tmp_path / "rollout-worker-0.log").read_text().count("\n") == 2


def test_dashboard_line_says_where_the_token_is(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    line = dashboard_line("http://127.0.0.1:8265", token_auth=True)
    assert str(tmp_path / "token") in line and "ray get-auth-token" in line
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    assert "RAY_AUTH_TOKEN environment variable" in dashboard_line("http://x", token_auth=True)
    assert "token" not in dashboard_line("http://127.0.0.1:8265", token_auth=False)
