"""Mask2Former's raw outputs -> scored instances, as mmdet 2.x's ``MaskFormerFusionHead`` computes them.

What GenEval's detector returns (mmdet ``Mask2FormerHead.simple_test`` + ``MaskFormerFusionHead.simple_test`` /
``instance_postprocess``, ``max_per_image=100``):

1. class probabilities = softmax over the classes plus "no object", without the last; the top 100 of all
   (query, class) pairs;
2. each pair's query mask logits, bilinearly upsampled (half-pixel centres) to the padded network input,
   cropped to the resized image, then bilinearly resized to the original image size;
3. binary mask = logit > 0; score = class probability x mean sigmoid of the logits inside the mask;
   box = ``mask2bbox`` (x_min, y_min, x_max + 1, y_max + 1; all zeros for an empty mask, whose score is 0).

Not transformers' ``post_process_instance_segmentation``, which resamples to 384 x 384 and thresholds
differently. Masks are upsampled once per distinct query (a query can appear with several classes), which gives
the same numbers as upsampling every pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MAX_PER_IMAGE = 100


@dataclass
class Detection:
    label: int  # class index in the detector's (COCO) order
    score: float
    box: tuple[float, float, float, float]  # x_min, y_min, x_max + 1, y_max + 1 in original-image pixels
    mask: np.ndarray  # bool, original image size (H, W)


def mask_to_box(mask: torch.Tensor) -> tuple[float, float, float, float]:
    """mmdet ``mask2bbox`` of one (H, W) bool mask: exclusive right/bottom edges; (0, 0, 0, 0) when empty."""
    xs = torch.nonzero(mask.any(dim=0)).flatten()
    ys = torch.nonzero(mask.any(dim=1)).flatten()
    if len(xs) == 0 or len(ys) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1))


def instance_postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    padded_size: tuple[int, int],
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
    max_per_image: int = MAX_PER_IMAGE,
) -> list[Detection]:
    """The top ``max_per_image`` (query, class) detections of one image.

    ``class_logits``: (queries, classes + 1), the last column "no object"; ``mask_logits``: (queries, h, w) at
    the network's mask resolution; sizes are (height, width): the padded network input, the resized image inside
    it (top-left), and the original image.
    """
    class_logits, mask_logits = class_logits.float(), mask_logits.float()
    num_classes = class_logits.shape[-1] - 1
    probs = class_logits.softmax(dim=-1)[:, :-1]
    k = min(max_per_image, probs.numel())
    top_scores, top_indices = probs.flatten().topk(k)
    queries = torch.div(top_indices, num_classes, rounding_mode="floor")
    labels = top_indices % num_classes

    distinct, slot = torch.unique(queries, return_inverse=True)
    logits = F.interpolate(mask_logits[distinct][:, None], size=padded_size, mode="bilinear", align_corners=False)
    logits = logits[..., : resized_size[0], : resized_size[1]]
    logits = F.interpolate(logits, size=original_size, mode="bilinear", align_corners=False)[:, 0]
    binary = logits > 0
    inside = binary.float()
    mask_scores = (logits.sigmoid() * inside).flatten(1).sum(1) / (inside.flatten(1).sum(1) + 1e-6)
    boxes = [mask_to_box(m) for m in binary]
    masks = binary.cpu().numpy()

    return [
        Detection(
            label=int(labels[j]),
            score=float(top_scores[j] * mask_scores[slot[j]]),
            box=boxes[slot[j]],
            mask=masks[slot[j]],
        )
        for j in range(k)
    ]
