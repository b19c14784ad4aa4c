"""The network input of GenEval's detector: mmdet 2.x's Mask2Former test pipeline, without mmcv or torchvision.

``Resize(img_scale=(1333, 800), keep_ratio=True)`` -> ``Normalize(ImageNet mean/std on 0-255, to_rgb)`` ->
``Pad(size_divisor=32)`` (``configs/mask2former/mask2former_r50_lsj_8x2_50e_coco.py``, the base of the Swin-S
config GenEval loads):

* keep-ratio scale factor = min(1333 / long side, 800 / short side), new size = int(side * factor + 0.5)
  (mmcv ``rescale_size``);
* resize = OpenCV ``INTER_LINEAR`` on uint8 (half-pixel centres, edge replication, no antialiasing) -> uint8.
  Here: torch bilinear with ``align_corners=False``, rounded to uint8. OpenCV's fixed-point arithmetic can round
  a pixel to the neighbouring level (|diff| <= 1 of 255);
* (pixel - mean) / std per RGB channel, then zero padding (in normalised units) at the bottom and right up to
  multiples of 32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SCALE = (1333, 800)  # (long edge, short edge) bounds
SIZE_DIVISOR = 32
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class InputGeometry:
    original: tuple[int, int]  # (height, width) of the image
    resized: tuple[int, int]  # after the keep-ratio resize
    padded: tuple[int, int]  # the network input: resized, padded to multiples of SIZE_DIVISOR


def geometry(height: int, width: int) -> InputGeometry:
    factor = min(max(SCALE) / max(height, width), min(SCALE) / min(height, width))
    new_h, new_w = int(height * factor + 0.5), int(width * factor + 0.5)
    pad_h = -(-new_h // SIZE_DIVISOR) * SIZE_DIVISOR
    pad_w = -(-new_w // SIZE_DIVISOR) * SIZE_DIVISOR
    return InputGeometry(original=(height, width), resized=(new_h, new_w), padded=(pad_h, pad_w))


def detector_input(images: Sequence[np.ndarray]) -> tuple[torch.Tensor, InputGeometry]:
    """The normalised, padded batch (B, 3, H, W) float32 of same-size uint8 RGB images, and its geometry."""
    sizes = {im.shape[:2] for im in images}
    if len(sizes) != 1:
        # mmdet pads a batch to its largest member, which changes the input of the smaller images; the official
        # evaluator runs one image at a time, so a batch must share one size to give the same numbers.
        raise ValueError(f"a detector batch must hold images of one size, got {sorted(sizes)}")
    geo = geometry(*sizes.pop())
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=geo.resized, mode="bilinear", align_corners=False)
    x = x.round().clamp(0, 255)  # OpenCV returns uint8 for a uint8 image
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    x = F.pad(x, (0, geo.padded[1] - geo.resized[1], 0, geo.padded[0] - geo.resized[0]))
    return x, geo
