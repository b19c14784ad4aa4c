"""Weights & Biases (optional, ``logging.wandb=true``; ``pip install -e '.[wandb]'``): the same scalars and image
grids as TensorBoard, in an offline run under ``OUTPUT_DIR/wandb`` unless ``logging.wandb_mode=online``
(``wandb sync OUTPUT_DIR/wandb/offline-run-*`` uploads an offline run later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cluster.config import Config, to_yaml
from cluster.tensorboard_log import numeric_items, scalar_tag


class WandbLog:
    def __init__(self, cfg: Config, root: Path):
        import wandb
        import yaml

        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.logging.wandb_project,
            mode=str(cfg.logging.wandb_mode),
            dir=str(root),
            name=root.name,
            config=yaml.safe_load(to_yaml(cfg)),
        )

    def scalars(self, step: int, row: dict[str, Any]) -> None:
        self.run.log({scalar_tag(k): v for k, v in numeric_items(row).items()}, step=step)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        self.run.log({tag: self._wandb.Image(image)}, step=step)

    def close(self) -> None:
        self.run.finish()
