"""The ``pixel_values`` of a transformers PIL-backend image processor (``CLIPImageProcessorPil``: CLIP, HPS, GIT)
for uint8 RGB arrays, image by image, bit for bit what ``processor(images=[PIL images], return_tensors="pt")``
gives, at less per-image cost.

The processor works image by image: PIL image -> numpy -> back to a PIL image for the resize -> numpy -> crop ->
rescale in float64 -> normalise in float32. Here each image goes straight from its array to the processor's own
``resize`` and ``center_crop`` (the PIL round trip before them only copied pixels), and is rescaled and
normalised by a table look-up: a uint8 pixel has 256 values per channel, so the processor's own ``rescale`` and
``normalize`` run once on those 256 values and every pixel reads its result. For eight 384-px images that takes
about 20 % off the processor's time at 32 px (the tiny test CLIP) and 40 % at 224 px (CLIP, HPS), in process on
one thread. What is left is PIL's bicubic resize itself (0.8 ms per 384-px image to 32 px, 1.6 ms to 224 px),
which a batch cannot share (torch's antialiased bicubic is not bit-exact with it, so it stays); a reward server
runs it on several threads at once instead (:meth:`PixelValues.image` is the scorers' ``prepare_image``).
"""

from __future__ import annotations

import numpy as np
from transformers.image_processing_backends import PilBackend


class PixelValues:
    """Row ``i`` of ``processor(images=[PIL.Image.fromarray(im) for im in images], return_tensors="pt").pixel_values``
    from ``images[i]`` alone, for a processor that runs PilBackend's resize -> center crop -> rescale -> normalise
    (no padding)."""

    def __init__(self, processor: PilBackend):
        if not isinstance(processor, PilBackend) or type(processor)._preprocess is not PilBackend._preprocess:
            raise TypeError(
                f"{type(processor).__name__} does not preprocess with PilBackend's resize, crop, rescale, "
                "normalise steps; use the processor itself for it"
            )
        if processor.do_pad:
            raise ValueError("an image processor with do_pad=true pads after normalising; use the processor itself")
        self.processor = processor
        self.table = self._value_table(processor)

    @staticmethod
    def _value_table(p: PilBackend) -> np.ndarray:
        """[3, 256]: what the processor's rescale and normalise make of each uint8 value in each channel, computed
        by those same methods on a channels-first image holding every value once."""
        values = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 1, 256)).copy()
        if p.do_rescale:
            values = p.rescale(values, p.rescale_factor)
        if p.do_normalize:
            values = p.normalize(values, p.image_mean, p.image_std)
        return np.ascontiguousarray(values[:, 0])

    def resized(self, image: np.ndarray) -> np.ndarray:
        """One H x W x 3 uint8 array resized and cropped by the processor's own methods, channels first."""
        p = self.processor
        chw = image.transpose(2, 0, 1)  # what the processor makes of a PIL image, without the copies
        if p.do_resize:
            chw = p.resize(chw, p.size, p.resample)
        if p.do_center_crop:
            chw = p.center_crop(chw, p.crop_size)
        return chw

    def image(self, image: np.ndarray) -> np.ndarray:
        """[3, h, w] pixel values of one uint8 H x W x 3 RGB array (checked by the caller)."""
        resized = self.resized(image)
        out = np.empty(resized.shape, self.table.dtype)
        for c in range(3):
            self.table[c].take(resized[c], out=out[c])
        return out
