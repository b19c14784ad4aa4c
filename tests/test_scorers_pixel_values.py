"""The pixel values of rewards/scorers/pixel_values.py against the image processor itself, fed PIL images as the
scorers fed it before: equal bit for bit (torch.equal), over processor settings and image shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, GroundingDinoImageProcessorPil

from rewards.scorers.pixel_values import PixelValues

# Square and not, smaller and larger than the crops below, odd sizes (rounding of the resize and the crop).
SHAPES = [(384, 384), (40, 40), (17, 17), (300, 200), (201, 333), (9, 31), (224, 225)]

SETTINGS = {
    "clip_224": {},  # openai/clip-vit-*, HPS (laion ViT-H-14): shortest edge 224, crop 224, bicubic
    "tiny_32": {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}},  # the test models
    "crop_larger_than_resize": {"size": {"shortest_edge": 20}, "crop_size": {"height": 25, "width": 23}},
    "fixed_size_bilinear": {"size": {"height": 30, "width": 40}, "resample": Image.BILINEAR, "do_center_crop": False},
    "no_rescale": {"size": {"shortest_edge": 16}, "crop_size": {"height": 16, "width": 16}, "do_rescale": False},
    "no_normalise": {"size": {"shortest_edge": 16}, "crop_size": {"height": 16, "width": 16}, "do_normalize": False},
    "scalar_mean_std": {
        "size": {"shortest_edge": 16},
        "crop_size": {"height": 16, "width": 16},
        "image_mean": 0.5,
        "image_std": 0.25,
    },
}


def random_images(shapes, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def pixel_values(pv: PixelValues, images: list[np.ndarray]) -> torch.Tensor:
    """The batch the scorers build: each image's values on its own, stacked."""
    return torch.from_numpy(np.stack([pv.image(im) for im in images]))


@pytest.mark.parametrize("setting", SETTINGS)
def test_equal_to_the_processor_on_pil_images(setting):
    processor = CLIPImageProcessorPil(**SETTINGS[setting])
    imgs = random_images(SHAPES)
    imgs.append(random_images([(50, 70)])[0].transpose(1, 0, 2))  # not C-contiguous
    imgs.append(np.full((60, 60, 3), (0, 255, 128), np.uint8))  # the extreme values
    want = processor(images=[Image.fromarray(im, "RGB") for im in imgs], return_tensors="pt").pixel_values
    got = pixel_values(PixelValues(processor), imgs)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert torch.equal(got, want)


def test_every_uint8_value_maps_as_the_processor_maps_it():
    """Each of the 256 values in each channel, through resize-free settings, so that the table look-up is
    compared value by value with the processor's rescale and normalise."""
    processor = CLIPImageProcessorPil(do_resize=False, do_center_crop=False)
    values = np.arange(256, dtype=np.uint8)
    image = np.stack([values, values[::-1], np.roll(values, 7)], -1)[None]  # 1 x 256 x 3
    want = processor(images=[Image.fromarray(image, "RGB")], return_tensors="pt").pixel_values
    assert torch.equal(pixel_values(PixelValues(processor), [image]), want)


def test_refuses_processors_it_would_not_reproduce():
    with pytest.raises(TypeError, match="GroundingDinoImageProcessorPil does not preprocess with PilBackend"):
        PixelValues(GroundingDinoImageProcessorPil())
    with pytest.raises(ValueError, match="do_pad=true pads after normalising"):
        PixelValues(CLIPImageProcessorPil(do_pad=True))
