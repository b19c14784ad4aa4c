"""Every evaluator the harness can load, by the name its per-image results are filed under (``scores/{name}.jsonl``):
what it needs (checked before any image is drawn, errors naming the config key, the path, the files expected and
where to get them) and how it is built inside its Ray actor.

One evaluator model is loaded at a time; a metric that combines several (CompBench's complex 3-in-1) reads the
results of several passes (evaluation/metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evaluation.base import Evaluator
from evaluation.compbench import spacy_parse
from evaluation.compbench.files import COMPBENCH_REPO, BenchmarkFileError, load_unidet_labels
from evaluation.compbench.three_in_one import ComplexSubsets
from evaluation.config import EvalConfig
from evaluation.geneval.prompts import prompts_dir
from evaluation.local_files import MissingFilesError, ModelSpec
from evaluation.models import BLIP_VQA, CLIP_B32, CLIP_L14, DPT_HYBRID, GDINO, MASK2FORMER, QWEN_JUDGE
from evaluation.wise.checkout import checkout_dir
from evaluation.wise.variants import LEGACY, VERIFIED

LABELS = "unidet_labels_722.json"
NEW_OBJECTS = "new_objects.txt"
COMPLEX_SPATIAL = "complex_val_spatial.txt"
COMPLEX_ACTION = "complex_val_action.txt"


class EvaluatorSetupError(ValueError):
    """An evaluator's model directory or data file is missing; the message names the config key to set."""


def _model(cfg: EvalConfig, key: str, spec: ModelSpec) -> Path:
    try:
        return spec.require(getattr(cfg.models, key))
    except MissingFilesError as e:
        raise EvaluatorSetupError(f"eval.models.{key}: {e}") from None


def _compbench_file(cfg: EvalConfig, name: str) -> Path:
    path = cfg.files.path("t2i_compbench") / name
    if not path.is_file():
        raise EvaluatorSetupError(
            f"eval.files.t2i_compbench: {str(path)!r} not found; the folder must hold "
            f"{name} (from {COMPBENCH_REPO}, MIT; the UniDet labels are the 'labels' of "
            f"UniDet_eval's detection_features.pt as a JSON list)"
        )
    return path


def _labels(cfg: EvalConfig) -> Path:
    path = _compbench_file(cfg, LABELS)
    try:
        load_unidet_labels(path)
    except BenchmarkFileError as e:
        raise EvaluatorSetupError(f"eval.files.t2i_compbench: {e}") from None
    return path


def _spacy() -> None:
    try:
        spacy_parse.load_spacy()
    except spacy_parse.SpacyUnavailable as e:
        raise EvaluatorSetupError(str(e)) from None


def _wise_checkout(cfg: EvalConfig, variant) -> Path:
    try:
        return checkout_dir(cfg.files.path("wise"), variant)
    except MissingFilesError as e:
        raise EvaluatorSetupError(f"eval.files.wise: {e}") from None


@dataclass(frozen=True)
class PassSpec:
    name: str
    check: Callable[[EvalConfig], None]  # raises EvaluatorSetupError naming what is missing
    build: Callable[[EvalConfig, str, int], Evaluator]  # (config, device, batch size), inside the actor


def _blip(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
    from evaluation.compbench.blip_vqa import BlipVqaEvaluator

    return BlipVqaEvaluator.load(cfg.models.blip_vqa, device, batch)


def _clip(complex_text: bool) -> Callable[[EvalConfig, str, int], Evaluator]:
    def build(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
        from evaluation.compbench.clipscore import ClipScoreEvaluator

        return ClipScoreEvaluator.load(cfg.models.clip_b32, complex_text, device, batch)

    return build


def _spatial(complex_parse: bool) -> Callable[[EvalConfig, str, int], Evaluator]:
    def build(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
        from evaluation.compbench.spatial import Spatial2DEvaluator

        return Spatial2DEvaluator.load(cfg.models.grounding_dino, _labels(cfg), complex_parse, device, batch)

    return build


def _spatial3d(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
    from evaluation.compbench.spatial import Spatial3DEvaluator

    return Spatial3DEvaluator.load(cfg.models.grounding_dino, cfg.models.dpt_hybrid, _labels(cfg), device, batch)


def _numeracy(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
    from evaluation.compbench.numeracy import NumeracyEvaluator

    return NumeracyEvaluator.load(
        cfg.models.grounding_dino, _labels(cfg), _compbench_file(cfg, NEW_OBJECTS), device, batch
    )


def _geneval(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
    from evaluation.geneval.evaluator import GenevalEvaluator

    return GenevalEvaluator.load(cfg.models.mask2former, cfg.models.clip_l14, cfg.files.path("geneval"), device, batch)


def _wise(legacy: bool) -> Callable[[EvalConfig, str, int], Evaluator]:
    def build(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
        from evaluation.wise.evaluator import WiseLegacyEvaluator, WiseVerifiedEvaluator

        cls = WiseLegacyEvaluator if legacy else WiseVerifiedEvaluator
        return cls.load(cfg.models.wise_judge, cfg.files.path("wise"), device, batch)

    return build


def _color(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
    from evaluation.proxies import color_proxy

    return color_proxy()


def _objects(cfg: EvalConfig, device: str, batch: int) -> Evaluator:
    from evaluation.proxies import objects_proxy

    return objects_proxy(batch)


def _checks(*checks: Callable[[EvalConfig], object]) -> Callable[[EvalConfig], None]:
    def check(cfg: EvalConfig) -> None:
        for c in checks:
            c(cfg)

    return check


def _geneval_prompts(cfg: EvalConfig) -> None:
    try:
        prompts_dir(cfg.files.path("geneval"))
    except MissingFilesError as e:
        raise EvaluatorSetupError(f"eval.files.geneval: {e}") from None


_gdino = lambda cfg: _model(cfg, "grounding_dino", GDINO)
PASSES: dict[str, PassSpec] = {
    p.name: p
    for p in (
        PassSpec("blip_vqa", _checks(lambda c: _model(c, "blip_vqa", BLIP_VQA), lambda c: _spacy()), _blip),
        PassSpec("clipscore", _checks(lambda c: _model(c, "clip_b32", CLIP_B32)), _clip(False)),
        PassSpec(
            "clipscore_complex", _checks(lambda c: _model(c, "clip_b32", CLIP_B32), lambda c: _spacy()), _clip(True)
        ),
        PassSpec("spatial@gdino", _checks(_gdino, _labels, lambda c: _spacy()), _spatial(False)),
        PassSpec("spatial_complex@gdino", _checks(_gdino, _labels, lambda c: _spacy()), _spatial(True)),
        PassSpec(
            "spatial3d@gdino",
            _checks(_gdino, lambda c: _model(c, "dpt_hybrid", DPT_HYBRID), _labels, lambda c: _spacy()),
            _spatial3d,
        ),
        PassSpec(
            "numeracy@gdino",
            _checks(_gdino, _labels, lambda c: _compbench_file(c, NEW_OBJECTS), lambda c: _spacy()),
            _numeracy,
        ),
        PassSpec(
            "geneval_mask2former",
            _checks(
                lambda c: _model(c, "mask2former", MASK2FORMER),
                lambda c: _model(c, "clip_l14", CLIP_L14),
                _geneval_prompts,
            ),
            _geneval,
        ),
        PassSpec(
            VERIFIED.metric,
            _checks(lambda c: _model(c, "wise_judge", QWEN_JUDGE), lambda c: _wise_checkout(c, VERIFIED)),
            _wise(False),
        ),
        PassSpec(
            LEGACY.metric,
            _checks(lambda c: _model(c, "wise_judge", QWEN_JUDGE), lambda c: _wise_checkout(c, LEGACY)),
            _wise(True),
        ),
        PassSpec("color@embedded", _checks(), _color),
        PassSpec("objects@embedded", _checks(lambda c: _spacy()), _objects),
    )
}


def complex_subsets(cfg: EvalConfig) -> ComplexSubsets:
    """Which complex prompts combine which parts (the 3-in-1 sub-lists)."""
    return ComplexSubsets.load(_compbench_file(cfg, COMPLEX_SPATIAL), _compbench_file(cfg, COMPLEX_ACTION))


def check_passes(cfg: EvalConfig, names: set[str]) -> None:
    """Every named evaluator's model directories and data files, checked before any image is drawn."""
    for name in PASSES:
        if name in names:
            PASSES[name].check(cfg)
