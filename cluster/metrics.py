"""Per-step metrics as Ray custom metrics (``ray.util.metrics``), shown in the Ray dashboard's metrics view.

Each numeric column of a metrics row becomes a gauge ``t2i_<column>`` tagged with the run name; Ray exports
them on the node's Prometheus endpoint (with a ``ray_`` prefix), which the dashboard's Grafana panels read.
"""

from __future__ import annotations

import math
import re
from typing import Any


class RayMetrics:
    def __init__(self, run: str):
        from ray.util import metrics

        self._metrics = metrics
        self._run = run
        self._gauges: dict[str, Any] = {}
        self._steps = metrics.Counter("t2i_steps_total", description="BiCoT-GRPO steps completed", tag_keys=("run",))
        self._images = metrics.Counter("t2i_images_total", description="images generated and scored", tag_keys=("run",))

    def _gauge(self, key: str):
        name = "t2i_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
        if name not in self._gauges:
            self._gauges[name] = self._metrics.Gauge(name, description=f"per-step {key}", tag_keys=("run",))
        return self._gauges[name]

    def publish(self, row: dict[str, Any], images: int) -> None:
        tags = {"run": self._run}
        for k, v in row.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self._gauge(k).set(float(v), tags=tags)
        self._steps.inc(1.0, tags=tags)
        self._images.inc(float(images), tags=tags)
