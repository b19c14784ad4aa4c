"""The official evaluators' image transforms, written with PIL and torch (torchvision cannot be installed beside the
CPU torch). torchvision's transforms on PIL images call ``PIL.Image.resize`` with the sizes computed below, so
these give the same pixels; ToTensor + Normalize are the same float32 operations in the same order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's, also BLIP's (BLIPvqa_eval/data/__init__.py:13)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

BLIP_IMAGE_SIZE = 480  # BLIP-VQA capfilt-large runs at 480 px (configs/vqa.yaml)
CLIP_IMAGE_SIZE = 224
UNIDET_SIZE, UNIDET_MAX_SIZE = 479, 480  # experts/model_bank.py:90-92, Resize(size=479, max_size=480)
DPT_IMAGE_SIZE = 480  # experts/model_bank_3d.py:20-24, Resize([480, 480])


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image, "RGB")


def normalise(images: Sequence[Image.Image], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """ToTensor then Normalize: [B, 3, H, W] float32."""
    x = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1) for im in images])
    x = x.float().div(255)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def blip_pixels(images: Sequence[np.ndarray], size: int = BLIP_IMAGE_SIZE) -> torch.Tensor:
    """BLIP-VQA test transform: Resize((size, size), BICUBIC), ToTensor, Normalize(CLIP mean/std)."""
    return normalise([to_pil(im).resize((size, size), Image.BICUBIC) for im in images], CLIP_MEAN, CLIP_STD)


def shortest_side_size(width: int, height: int, size: int, max_size: int | None = None) -> tuple[int, int]:
    """torchvision ``Resize(size, max_size=...)`` with an int size: the shorter side becomes ``size`` and the
    longer ``int(size * long / short)``; if that exceeds ``max_size``, the longer side becomes ``max_size`` and
    the shorter ``int(max_size * short / long)``. Returns (width, height)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if width <= height else (new_long, new_short)


def centre_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """torchvision ``CenterCrop(size)`` on an image at least ``size`` on each side: (left, top, right, bottom)."""
    left, top = round((width - size) / 2.0), round((height - size) / 2.0)
    return left, top, left + size, top + size


def clip_pixels(images: Sequence[np.ndarray], size: int = CLIP_IMAGE_SIZE) -> torch.Tensor:
    """OpenAI CLIP's preprocess: Resize(size, BICUBIC) on the shorter side, CenterCrop(size), ToTensor,
    Normalize(CLIP mean/std)."""
    out = []
    for im in images:
        pil = to_pil(im)
        pil = pil.resize(shortest_side_size(*pil.size, size), Image.BICUBIC)
        out.append(pil.crop(centre_crop_box(*pil.size, size)))
    return normalise(out, CLIP_MEAN, CLIP_STD)


def unidet_frame_size(width: int, height: int) -> tuple[int, int]:
    """The (width, height) UniDet sees and reports boxes in: Resize(479, max_size=480) of the image, 479 x 479
    for a square one. CompBench's pixel thresholds (150 px in the 2D rule) are in this frame."""
    return shortest_side_size(width, height, UNIDET_SIZE, UNIDET_MAX_SIZE)


def dpt_pixels(images: Sequence[np.ndarray], size: int = DPT_IMAGE_SIZE) -> torch.Tensor:
    """DPT depth transform: Resize([size, size]) (bilinear), ToTensor, Normalize(0.5, 0.5)."""
    return normalise([to_pil(im).resize((size, size), Image.BILINEAR) for im in images], (0.5,) * 3, (0.5,) * 3)
