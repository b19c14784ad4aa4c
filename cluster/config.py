"""The training run's config tree: the sections every package owns, composed, plus the loop's own sections.

``model`` (policy/config.py), ``rollout`` (rollout/config.py), ``rewards`` (rewards/config.py), ``learner``
(learner/config.py), ``data`` (core/prompt_file.py) and ``eval`` (evaluation/config.py, read by
``trainer.eval_every`` and by ``python -m evaluation.run``) are defined beside the code that reads them; ``trainer``,
``cluster`` and ``logging`` are this application's. The dataclass defaults are the embedded default (a tiny
random Janus on CPU, embedded rewards); presets in ``cluster/configs/*.yaml`` override them; ``key=value``
arguments override both. Loading and validation are core/config.py's: unknown keys (with a "did you mean"),
wrong types, values outside a field's choices, out-of-range values and missing model files are all reported as
ConfigError naming the full key.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

from core import config as loader
from core.config import require
from core.prompt_file import DataConfig
from evaluation.config import EvalConfig
from learner.config import LearnerConfig, LearnerSetup
from policy.config import ModelConfig
from rewards.config import RewardsConfig
from rollout.config import RolloutConfig


class TrainMode(StrEnum):
    sync = "sync"  # on-policy, T2I-R1's order
    off_policy = "off_policy"  # the rollout of step t+1 overlaps the update of step t


@dataclass
class TrainerConfig:
    steps: int = 40
    prompts_per_step: int = 16  # T2I-R1: 16 (with G = 8: 128 images a step)
    mode: TrainMode = TrainMode.sync
    save_every: int = 10  # checkpoint every k steps (0 = only at the end)
    eval_every: int = 0  # run eval.during_training on the current weights every k steps (0 = never)

    def validate(self) -> None:
        require(self.steps >= 1, "steps", "must be >= 1")
        require(self.prompts_per_step >= 1, "prompts_per_step", "must be >= 1")
        require(self.save_every >= 0, "save_every", "must be >= 0")
        require(self.eval_every >= 0, "eval_every", "must be >= 0")


@dataclass
class ClusterConfig:
    address: Optional[str] = None  # None: start a local Ray cluster; "auto" or host:port: join a running one
    host: str = "127.0.0.1"  # address that Ray, gRPC and torch.distributed bind to
    num_cpus: Optional[int] = None  # local cluster only
    dashboard_port: int = 8265
    object_store_mb: int = 512

    def validate(self) -> None:
        require(1 <= self.dashboard_port <= 65535, "dashboard_port", "must be a TCP port")
        require(self.object_store_mb >= 64, "object_store_mb", "must be >= 64")


class WandbMode(StrEnum):
    offline = "offline"  # a local run directory, no network (`wandb sync` uploads it later)
    online = "online"


@dataclass
class LoggingConfig:
    image_every: int = 5  # image grid every k steps (0 = never)
    grid_images: int = 16
    sample_images_every: int = 1  # each sample's PNG under rollouts/images_step_N/ every k steps (0 = never)
    plot_every: int = 5  # refresh metrics.png every k steps (and at the end; 0 = only at the end)
    writer_queue: int = 2  # steps whose outputs may wait for the background writer before the loop waits for it
    tensorboard: bool = True  # event files under tensorboard/ (`tensorboard --logdir OUTPUT_DIR/tensorboard`)
    wandb: bool = False  # Weights & Biases (pip install '.[wandb]'), offline by default
    wandb_mode: WandbMode = WandbMode.offline
    wandb_project: str = "t2i-r1-ray"
    verbose: bool = False  # show the libraries' output (vLLM, DeepSpeed, progress bars) on the console too
    ray_metrics: bool = True

    def validate(self) -> None:
        require(self.image_every >= 0, "image_every", "must be >= 0")
        require(self.grid_images >= 1, "grid_images", "must be >= 1")
        require(self.sample_images_every >= 0, "sample_images_every", "must be >= 0")
        require(self.plot_every >= 0, "plot_every", "must be >= 0")
        require(self.writer_queue >= 1, "writer_queue", "must be >= 1")
        require(
            not self.wandb or importlib.util.find_spec("wandb") is not None,
            "wandb",
            "needs the wandb package (an optional extra): pip install -e '.[wandb]'",
        )


@dataclass
class Config:
    seed: int = 0
    output_dir: str = "outputs/run"  # relative: to the current directory (inside a Ray job: to ~/t2i-r1-ray)
    resume: bool = False  # continue the run in output_dir (cluster/run_dir.py: which fields may change)
    overwrite: bool = False  # a new run in an output_dir that holds a run: delete that run first
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def learner_setup(cfg: Config) -> LearnerSetup:
    """What the learner ranks read of the run's config."""
    return LearnerSetup(
        model=cfg.model,
        learner=cfg.learner,
        image_sampling=cfg.rollout.image,
        global_batch=cfg.trainer.prompts_per_step * cfg.rollout.group_size,
        steps=cfg.trainer.steps,
    )


def load_config(config: Optional[str] = None, overrides: Optional[list[str]] = None) -> Config:
    """Defaults <- preset/YAML file <- ``key=value`` overrides; validated. Raises core.config.ConfigError."""
    return loader.load_config(Config, config, overrides)


def load_cli_config(config: Optional[str], overrides: list[str]) -> Config:
    """:func:`load_config` for ``python -m cluster.run``: a bad config exits with status 2 and the message."""
    return loader.load_cli_config(Config, config, overrides)


def to_yaml(cfg: Config) -> str:
    return loader.to_yaml(cfg)


def from_yaml(text: str) -> Config:
    """Inverse of :func:`to_yaml` (used to hand the resolved config to Ray actors and on resume)."""
    return loader.from_yaml(Config, text)
