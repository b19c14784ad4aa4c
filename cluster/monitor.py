"""`python -m cluster.monitor` (`make monitor`): the metrics behind the Ray dashboard's Metrics view.

Starts Prometheus (the Debian package `prometheus`; `make monitor` installs it when missing) with the scrape
configuration Ray generates for its session (``SESSION/metrics/prometheus/prometheus.yml``, which reads the node
list Ray keeps in ``SESSION/prom_metrics_service_discovery.json``), and, where Grafana is installed, Grafana with
the configuration and dashboards Ray generates (``SESSION/metrics/grafana``) plus ours
(``cluster/grafana/t2i_training.json``: reward per scorer, KL, stage seconds, images/s, version lag, reward
replica latency, its split and retries). The Ray dashboard looks for Prometheus on localhost:9090 and Grafana on
localhost:3000 (the defaults here), so its Metrics view fills in once they run. Runs until Ctrl-C.

The per-step numbers are Ray gauges named ``ray_t2i_<metrics column>``, tagged with the run's name, e.g.
``ray_t2i_reward_mean{run="run"}``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import yaml

DEFAULT_SESSION = "/tmp/ray/session_latest"
DASHBOARD = Path(__file__).resolve().parent / "grafana" / "t2i_training.json"
GRAFANA_HOMES = ("/usr/share/grafana", "/usr/local/share/grafana", "/opt/grafana")


class MonitorError(RuntimeError):
    pass


def prometheus_config(session: Path, out: Path, scrape_interval: Optional[str] = None) -> Path:
    """Ray's generated Prometheus configuration of ``session``, copied to ``out`` (with ``scrape_interval`` in
    place of Ray's 10 s when given)."""
    ray_config = session / "metrics" / "prometheus" / "prometheus.yml"
    if not ray_config.is_file():
        raise MonitorError(
            f"{ray_config} does not exist: no Ray session with its dashboard at {session}. Start one first "
            f"(`make run`, or `ray start --head`), or pass --session-dir TEMP_DIR/session_latest of yours"
        )
    config = yaml.safe_load(ray_config.read_text())
    if scrape_interval:
        config.setdefault("global", {})["scrape_interval"] = scrape_interval
        config["global"]["evaluation_interval"] = scrape_interval
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config))
    return out


def prometheus_command(config: Path, data_dir: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise MonitorError(
            "Prometheus is not installed: `make monitor` installs it (apt-get install prometheus, "
            "as root), or install it yourself and put `prometheus` on PATH"
        )
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        "--web.enable-lifecycle",
    ]


def grafana_command(session: Path, port: int) -> Optional[list[str]]:
    """Grafana with Ray's generated configuration plus our dashboard, or None where Grafana is not installed."""
    binary = shutil.which("grafana") or shutil.which("grafana-server")
    home = next((h for h in GRAFANA_HOMES if Path(h).is_dir()), None)
    if binary is None or home is None:
        return None
    grafana = session / "metrics" / "grafana"
    dashboards = grafana / "dashboards"  # Ray's provisioning reads every dashboard in this folder
    dashboards.mkdir(parents=True, exist_ok=True)
    shutil.copy(DASHBOARD, dashboards / DASHBOARD.name)
    args = ["server"] if Path(binary).name == "grafana" else []
    return [
        binary,
        *args,
        f"--config={grafana / 'grafana.ini'}",
        f"--homepath={home}",
        f"cfg:server.http_port={port}",
        "cfg:server.http_addr=127.0.0.1",
    ]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m cluster.monitor",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--session-dir",
        default=DEFAULT_SESSION,
        help=f"the Ray session to watch (default {DEFAULT_SESSION}: the newest local one)",
    )
    p.add_argument("--prometheus-port", type=int, default=9090)
    p.add_argument("--grafana-port", type=int, default=3000)
    p.add_argument("--scrape-interval", help="e.g. 2s (default: Ray's, 10s)")
    args = p.parse_args(argv)
    session = Path(args.session_dir).resolve()
    try:
        config = prometheus_config(
            session, session / "metrics" / "prometheus" / "t2i-prometheus.yml", args.scrape_interval
        )
        commands = {
            "prometheus": prometheus_command(config, session / "metrics" / "prometheus" / "data", args.prometheus_port)
        }
    except MonitorError as e:
        print(f"monitor: {e}", file=sys.stderr)
        return 2
    grafana = grafana_command(session, args.grafana_port)
    if grafana is not None:
        commands["grafana"] = grafana
    logs = session / "logs"
    procs = {}
    for name, cmd in commands.items():
        with open(logs / f"{name}.log", "ab") as log:
            procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=session)
    print(
        f"Prometheus: http://127.0.0.1:{args.prometheus_port}  (query e.g. ray_t2i_reward_mean; scrape config "
        f"{config}; log {logs / 'prometheus.log'})",
        flush=True,
    )
    if grafana is not None:
        print(f"Grafana: http://127.0.0.1:{args.grafana_port}  (dashboards: Ray's, and 'T2I-R1 training')", flush=True)
    else:
        print(
            f"Grafana is not installed: the Ray dashboard's Metrics view needs it; {DASHBOARD} is ours to import "
            f"into a Grafana elsewhere",
            flush=True,
        )
    print("Ctrl-C stops them.", flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(
                        f"monitor: {name} exited with {proc.returncode}; see {logs / (name + '.log')}", file=sys.stderr
                    )
                    stop.append(1)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
