"""Tiny random T2I-CompBench evaluator models (BLIP-VQA, DPT-Hybrid), saved with ``save_pretrained`` so that the
tests exercise the evaluators' real loading code. CLIP and GroundingDINO come from tests/tiny_reward_models.py."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_reward_models import bert_tokenizer

BLIP_VOCAB = 30524  # bert-base-uncased + BLIP's [DEC] (30522) and [ENC] (30523), which the original hard-codes
BLIP_NATIVE_SIZE = 24  # the tiny model's "hub" resolution (3 x 3 patches of 8 px); tests run it at 40 (5 x 5)


def tiny_blip_vqa_dir(path: Path, seed: int = 0) -> Path:
    from transformers import BlipConfig, BlipForQuestionAnswering

    path.mkdir(parents=True, exist_ok=True)
    bert_tokenizer().save_pretrained(path)
    config = BlipConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=BLIP_NATIVE_SIZE,
            patch_size=8,
            initializer_range=0.5,
        ),
        text_config=dict(
            vocab_size=BLIP_VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            encoder_hidden_size=32,
            initializer_range=0.5,
        ),
    )
    torch.manual_seed(seed)
    BlipForQuestionAnswering(config).save_pretrained(path)
    return path


def tiny_dpt_hybrid_config():
    """A DPT-Hybrid (BiT backbone, as Intel/dpt-hybrid-midas) with a 2 x 2 position-embedding grid at 32 px; run at
    64 px it resamples that grid to 4 x 4, as the real one goes from 24 x 24 (384 px) to 30 x 30 (480 px). Inputs
    must be multiples of 32 px for the output to have the input's size."""
    from transformers import DPTConfig

    return DPTConfig(
        is_hybrid=True,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=16,
        backbone_featmap_shape=[1, 64, 2, 2],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        reassemble_factors=[1, 1, 1, 0.5],
        backbone_config=dict(
            model_type="bit",
            global_padding="same",
            layer_type="bottleneck",
            depths=[1, 1, 1],
            out_features=["stage1", "stage2", "stage3"],
            embedding_dynamic_padding=True,
            hidden_sizes=[8, 16, 64],
            embedding_size=8,
            num_groups=2,
        ),
    )


def tiny_dpt_dir(path: Path, seed: int = 0) -> Path:
    from transformers import DPTForDepthEstimation

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    DPTForDepthEstimation(tiny_dpt_hybrid_config()).save_pretrained(path)
    return path


def threshold_between(scores, keep: float = 0.2) -> float:
    """A detection-score threshold for a tiny random detector (whose scores crowd near 1, so UniDet's 0.5 keeps
    nearly every box): it keeps about the top ``keep`` of ``scores`` and lies midway between two scores at least
    1e-3 apart, so that float noise between a batched and a single forward cannot move a box across it."""
    s = sorted(scores)
    gaps = [i for i in range(len(s) - 1) if s[i + 1] - s[i] > 1e-3]
    i = min(gaps, key=lambda i: abs(i - (1 - keep) * len(s)))
    return (s[i] + s[i + 1]) / 2


def require_spacy() -> None:
    """Skip the calling test when spaCy or its English model is missing (the CompBench prompt rules need both)."""
    import pytest

    from evaluation.compbench import spacy_parse

    try:
        spacy_parse.load_spacy()
    except spacy_parse.SpacyUnavailable as e:
        pytest.skip(f"spaCy or its English model is not installed: {e}")
