"""What the console of `python -m cluster.run` shows: our progress lines and the warnings that matter. The
libraries' output (vLLM, DeepSpeed, transformers' progress bars, Ray's own start-up lines) goes to files under the
run's ``logs/``; ``logging.verbose=true`` shows it on the console too.

- Actors: Ray forwards every line an actor prints to the driver (``log_to_driver``). :class:`WorkerOutput` takes
  those lines instead of Ray's printer: each line goes to ``logs/<actor>.log`` (the actor's repr, e.g.
  ``rollout-worker-0.log``), and only our packages' warnings and errors, and Ray's own notices (raylet: a worker
  killed for memory, ...), reach the console. Ray's session logs keep everything as before (the dashboard's
  Logs view, ``ray logs``).
- :func:`configure_worker_logging` runs in every Ray worker process (``worker_process_setup_hook``): it gives our
  packages' loggers a handler whose lines :class:`WorkerOutput` recognises.
- The driver's Ray logger (start-up notices) writes to ``logs/driver.log``; the dashboard line, with how to sign
  in when token authentication is on, is ours (:func:`dashboard_line`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

# our packages' loggers; their records carry this prefix in the workers' output
OUR_LOGGERS = ("core", "policy", "weightsync", "rollout", "rewards", "learner", "cluster")
WORKER_FORMAT = "[t2i] %(levelname)s %(name)s: %(message)s"
MATTERS = re.compile(r"^\[t2i\] (WARNING|ERROR|CRITICAL) ")
SETUP_HOOK = "cluster.console.configure_worker_logging"
DISPATCHER_HANDLER = "t2i_worker_output"


def configure_worker_logging() -> None:
    """In a Ray worker process: our loggers' INFO and above to stderr, in :data:`WORKER_FORMAT`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(WORKER_FORMAT))
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # a root handler set up by a library would print the record twice


def _file_name(source: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", source).strip("_") or "worker"


class WorkerOutput:
    """Ray's forwarded actor output -> one file per actor under ``log_dir``; the lines that matter -> ``console``.

    While an actor's constructor runs, Ray names it by its class (``RolloutActor``), afterwards by its repr
    (``rollout-worker-0``): the file of a process follows it to its later name, so each actor has one file."""

    def __init__(self, log_dir: Path, verbose: bool, console: TextIO = sys.stderr):
        self.log_dir = log_dir
        self.verbose = verbose
        self.console = console
        self._files: dict[Any, tuple[str, TextIO]] = {}  # pid -> (file name, open file)
        self._lock = threading.Lock()

    def install(self) -> None:
        """Take the place of Ray's printer of worker output in this (driver) process (verbose: beside it)."""
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

        if not self.verbose:
            dispatcher.remove_handler("ray_print_logs")
        dispatcher.add_handler(DISPATCHER_HANDLER, self.handle)

    def _file(self, pid: Any, source: str) -> TextIO:
        name = _file_name(source) + ".log"
        known = self._files.get(pid)
        if known is not None and known[0] == name:
            return known[1]
        path = self.log_dir / name
        if known is not None:  # the process got its later name: its earlier lines move to the new file
            known[1].close()
            earlier = self.log_dir / known[0]
            if path.exists():
                with open(path, "a") as f:
                    f.write(earlier.read_text())
                earlier.unlink()
            else:
                earlier.rename(path)
        f = open(path, "a", buffering=1)
        self._files[pid] = (name, f)
        return f

    def handle(self, data: dict[str, Any]) -> None:
        """One batch of lines from one worker (Ray's dict: pid, actor_name / task_name, lines, is_err)."""
        pid = data.get("pid")
        lines = data.get("lines") or []
        if not lines:
            return
        ray_notice = pid in ("raylet", "autoscaler")
        source = "ray" if ray_notice else (data.get("actor_name") or data.get("task_name") or f"worker-{pid}")
        with self._lock:
            f = self._file(pid, source)
            for line in lines:
                f.write(f"(pid={pid}) {line}\n")
        if self.verbose:
            return  # Ray's own printer shows everything
        if pid == "autoscaler":
            from ray._private.worker import filter_autoscaler_events

            shown = list(filter_autoscaler_events(lines))  # what Ray itself would print: events, not status
        else:
            shown = [line for line in lines if ray_notice or MATTERS.match(line)]
        for line in shown:
            print(f"({source}) {line.removeprefix('[t2i] ')}", file=self.console, flush=True)

    def close(self) -> None:
        with self._lock:
            for _, f in self._files.values():
                f.close()
            self._files.clear()


def quiet_ray_driver_logs(log_file: Path, verbose: bool) -> None:
    """Ray's own notices in the driver (cluster started, token authentication, ...) to ``log_file``, and off the
    console unless ``verbose`` (errors stay)."""
    import ray  # noqa: F401  (configures the "ray" logger and its console handler)

    ray_logger = logging.getLogger("ray")
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    ray_logger.addHandler(handler)
    if not verbose:
        for h in ray_logger.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setLevel(logging.ERROR)


def auth_token_source() -> str:
    """Where this process's Ray token comes from (Ray's precedence: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, then
    ~/.ray/auth_token)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "the RAY_AUTH_TOKEN environment variable"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")


def token_auth_enabled() -> bool:
    from ray._raylet import AuthenticationMode, get_authentication_mode

    return get_authentication_mode() == AuthenticationMode.TOKEN


def dashboard_line(url: str, token_auth: bool) -> str:
    line = (
        f"Ray dashboard: {url}  (Actors view: learner ranks, rollout workers, reward replicas; `make monitor` for "
        f"its metrics)"
    )
    if token_auth:
        line += (
            f"\n  token authentication is on: paste the token from {auth_token_source()} (or the output of "
            f"`ray get-auth-token`) into the dashboard's sign-in dialog"
        )
    return line
