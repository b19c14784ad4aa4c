"""Tiny random evaluator checkpoints for the benchmark-metric tests, built offline with the transformers classes
the real evaluators load and saved with ``save_pretrained`` (the CLIP builders are shared with the reward tests,
tests/tiny_reward_models.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# Eight queries over five classes: top-100 keeps all 40 (query, class) pairs.
TINY_DETECTOR_CLASSES = ["person", "dog", "cat", "car", "apple"]


def tiny_mask2former_config(num_labels: int = len(TINY_DETECTOR_CLASSES)):
    from transformers import Mask2FormerConfig

    # GroupNorm(32) in the pixel decoder needs feature sizes that are multiples of 32.
    return Mask2FormerConfig(
        backbone_config=dict(model_type="swin", embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                             window_size=7, image_size=224, out_features=["stage1", "stage2", "stage3", "stage4"]),
        feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=32, encoder_layers=1,
        decoder_layers=2, num_attention_heads=2, dim_feedforward=32, num_queries=8, num_labels=num_labels,
    )


def tiny_mask2former_dir(path: Path, seed: int = 0) -> Path:
    from transformers import Mask2FormerForUniversalSegmentation

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(tiny_mask2former_config())
    # A random model's class probabilities are near uniform and its mask logits near 0 (sigmoid 0.5): sharper
    # class and mask heads give detections above GenEval's 0.3 threshold, so the rules run on real detections,
    # and masks whose pixels are clearly in or out.
    with torch.no_grad():
        model.class_predictor.weight.mul_(40.0)
        last = model.model.transformer_module.decoder.mask_predictor.mask_embedder.get_submodule("2.0")
        last.weight.mul_(2000.0)
        last.bias.mul_(2000.0)
    model.save_pretrained(path)
    return path


def block_scene(h: int, w: int, seed: int) -> np.ndarray:
    """A uint8 RGB image of three flat colour blocks: a random Mask2Former's masks follow such edges (on noise
    they cover the whole image), so detections have partial masks and boxes."""
    rng = np.random.default_rng(seed)
    im = np.empty((h, w, 3), np.uint8)
    im[:] = rng.integers(0, 256, 3)
    im[: h // 2, : w // 2] = rng.integers(0, 256, 3)
    im[h // 3:, 2 * w // 3:] = rng.integers(0, 256, 3)
    return im
