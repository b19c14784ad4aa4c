"""T2I-CompBench 3D spatial's depth maps: MiDaS DPT-Hybrid (3D_spatial_eval.py:165-203), on transformers'
``DPTForDepthEstimation`` (Intel/dpt-hybrid-midas holds the original dpt_hybrid-midas-501f0c75.pt weights).

Per image, as the script builds it and reads it back: relative inverse depth (larger = closer) at 480 x 480,
min-max normalised, bilinearly resized (align_corners) to the image size, saved as an 8-bit greyscale PNG (PIL's
float -> L conversion), reloaded and resized to UniDet's frame like the RGB image (bilinear), divided by 255. The
result is indexed with the detections' boxes by detection_rules.depth_position.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import DPTForDepthEstimation

from evaluation.compbench.inputs import chunks
from evaluation.compbench.preprocess import DPT_IMAGE_SIZE, dpt_pixels, unidet_frame_size
from evaluation.models import DPT_HYBRID


class DptDepth:
    def __init__(self, model: DPTForDepthEstimation, image_size: int = DPT_IMAGE_SIZE, batch_size: int = 8):
        self.model = model.eval()
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        if model.config.is_hybrid:
            # transformers' hybrid embeddings refuse inputs other than config.image_size (384) although they
            # resample the position embedding to any grid, bilinearly, exactly as MiDaS's forward_flex does when
            # the original runs this checkpoint at 480 px; let them see the size we run at.
            model.dpt.embeddings.image_size = (image_size, image_size)

    @classmethod
    def load(cls, path: str | os.PathLike | None, device: str = "cpu", **kw) -> DptDepth:
        """From a local copy of Intel/dpt-hybrid-midas."""
        p = DPT_HYBRID.require(path)
        return cls(DPTForDepthEstimation.from_pretrained(p, local_files_only=True).to(device), **kw)

    @torch.no_grad()
    def predict(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """The model's raw output for a batch: [B, image_size, image_size] relative inverse depth."""
        pixels = dpt_pixels(images, self.image_size).to(self.device, self.model.dtype)
        return self.model(pixel_values=pixels).predicted_depth.float().cpu()

    def frame_depth(self, images: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Per image, the depth map the 3D rule reads: [frame height, frame width] float32 in [0, 1]."""
        out = []
        for s in chunks(len(images), self.batch_size):
            for im, depth in zip(images[s], self.predict(images[s])):
                out.append(to_frame(depth, im.shape[1], im.shape[0]))
        return out


def to_frame(depth: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """One raw depth map through the script's normalise / resize / 8-bit PNG / reload / frame-resize round trip."""
    depth = (depth - depth.min()) / (depth.max() - depth.min())
    depth = torch.nn.functional.interpolate(
        depth[None, None], size=(height, width), mode="bilinear", align_corners=True
    )[0, 0]
    png = Image.fromarray(255 * depth.numpy()).convert("L")
    png = png.resize(unidet_frame_size(width, height), Image.BILINEAR)
    return torch.tensor(np.array(png)).float() / 255.0
