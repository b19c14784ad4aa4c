"""`python -m cluster.monitor` against a real Ray session and a real Prometheus server, all on 127.0.0.1.

A Ray head (with its dashboard, which writes the Prometheus configuration) and a driver that publishes the trainer's
per-step gauges (cluster.metrics.RayMetrics, as the training loop does); the monitor starts Prometheus with Ray's
scrape configuration, and a PromQL query over HTTP returns the ``t2i_reward_mean`` series with the published value.
Every query of our Grafana dashboard is then run on the same server: each must be valid PromQL and find its series.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from core.ports import free_ports
from tests.test_cluster import _kill_session

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,  # a Ray head, a driver and Prometheus: ~30 s
    pytest.mark.skipif(
        shutil.which("prometheus") is None, reason="needs the prometheus binary (`make prometheus` installs it)"
    ),
]

ROW = {
    "reward_mean": 0.42,
    "reward_color_mean": 0.5,
    "kl": 0.01,
    "rollout_s": 1.5,
    "reward_s": 0.25,
    "learner_s": 2.0,
    "sync_s": 0.1,
    "step_s": 4.0,
    "images_per_s": 4.0,
    "version_lag_mean": 0.0,
    "version_lag_max": 0,
    "reward_color_latency_s": 0.02,
    "reward_color_retries": 0,
    "reward_color_encode_s": 0.001,
    "reward_color_wire_s": 0.005,
    "reward_color_score_s": 0.01,
}
DRIVER = f"""
import time, ray
from cluster.metrics import RayMetrics
ray.init(address="auto")
m = RayMetrics("monitor-test")
while True:
    m.publish({ROW!r}, 16)
    time.sleep(0.5)
"""


def _query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_prometheus_serves_the_t2i_gauges_of_a_ray_session():
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    gcs, prom, dashboard, metrics, agent, client = free_ports(6)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_metrics_report_interval_ms": "500",
        "RAY_AUTH_MODE": "disabled",
    }
    env.pop("RAY_ADDRESS", None)
    ray_bin = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--num-cpus=1",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--metrics-export-port={metrics}",
            f"--dashboard-agent-listen-port={agent}",
            f"--ray-client-server-port={client}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    driver = monitor = None
    session = Path(temp) / "session_latest"
    try:
        deadline = time.monotonic() + 120
        while not (session / "metrics" / "prometheus" / "prometheus.yml").is_file():  # the dashboard writes it
            assert time.monotonic() < deadline and head.poll() is None, "Ray head did not come up"
            time.sleep(0.5)
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER],
            cwd=REPO,
            env={**env, "RAY_ADDRESS": f"127.0.0.1:{gcs}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        monitor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cluster.monitor",
                f"--session-dir={session}",
                f"--prometheus-port={prom}",
                "--scrape-interval=1s",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        result: list = []
        while not result:
            assert time.monotonic() < deadline + 60, "ray_t2i_reward_mean never reached Prometheus"
            assert monitor.poll() is None, monitor.stdout.read()
            assert driver.poll() is None, "the publishing driver died"
            try:
                result = _query(prom, 'ray_t2i_reward_mean{run="monitor-test"}')["data"]["result"]
            except OSError:  # Prometheus still starting
                pass
            time.sleep(1)
        assert float(result[0]["value"][1]) == pytest.approx(0.42)

        dashboard = json.loads((REPO / "cluster" / "grafana" / "t2i_training.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                answer = _query(prom, target["expr"])
                assert answer["status"] == "success", (panel["title"], answer)
                assert answer["data"]["result"], f"panel {panel['title']!r}: no series for {target['expr']}"
    finally:
        if monitor is not None:
            monitor.send_signal(signal.SIGTERM)  # it stops its Prometheus
            try:
                monitor.wait(timeout=30)
            except subprocess.TimeoutExpired:
                monitor.kill()
        if driver is not None:
            _kill_session(driver.pid)
        _kill_session(head.pid)
        shutil.rmtree(temp, ignore_errors=True)
