"""GenEval's colour classifier: CLIP ViT-L/14 zero-shot over ten colours on each object's masked crop.

As the official evaluator does it (``evaluate_images.py`` l.76-127, open_clip 2.20 ``ViT-L-14``/``openai`` and
clip_benchmark 1.4's ``zero_shot_classifier``):

* crop: the object's mask composited on a #999999 grey image of the same size, cropped to its box;
* image: open_clip's eval transform, i.e. torchvision ``Resize(224, bicubic)`` of the shorter side (the longer
  becomes ``int(224 * long / short)``), ``CenterCrop(224)`` (offsets ``int(round((size - 224) / 2))``), /255,
  OpenAI CLIP mean/std; written here with PIL and numpy (no torchvision);
* text: for each colour c the three templates ``a photo of a {c} {cls}``, ``a photo of a {c}-colored {cls}``,
  ``a photo of a {c} object``; the class embedding is the mean of the L2-normalised text features, renormalised;
* prediction: argmax of normalised image features x class embeddings.

The official run encodes under CUDA fp16 autocast; this runs in the model's dtype (float32 by default), which can
only matter for near-ties.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoTokenizer, CLIPModel

from evaluation.geneval.prompts import COLORS
from evaluation.models import CLIP_L14

TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")
BACKGROUND = (153, 153, 153)  # "#999"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_dir(path) -> Path:
    return CLIP_L14.require(path)


def object_crop(image: np.ndarray, mask: np.ndarray, box: Sequence[float]) -> Image.Image:
    """The object's pixels on #999 grey, cropped to its box (x_min, y_min, x_max + 1, y_max + 1)."""
    composite = np.where(mask[..., None], image, np.array(BACKGROUND, dtype=np.uint8))
    x0, y0, x1, y1 = (round(v) for v in box[:4])
    return Image.fromarray(np.ascontiguousarray(composite[y0:y1, x0:x1]), "RGB")


def clip_pixels(crops: Sequence[Image.Image], size: int) -> torch.Tensor:
    """open_clip's eval transform of each crop -> (N, 3, size, size) float32."""
    out = []
    for im in crops:
        w, h = im.size
        if w <= h:
            new_w, new_h = size, int(size * h / w)
        else:
            new_w, new_h = int(size * w / h), size
        im = im.convert("RGB").resize((new_w, new_h), Image.BICUBIC)
        top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)  # Python's round: half to even
        arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
        out.append((arr - np.array(OPENAI_MEAN, dtype=np.float32)) / np.array(OPENAI_STD, dtype=np.float32))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


class ColorClassifier:
    def __init__(self, model: CLIPModel, tokenizer, batch_size: int = 16):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.image_size = int(model.config.vision_config.image_size)
        self.max_text_len = int(model.config.text_config.max_position_embeddings)
        self._classifiers: dict[str, torch.Tensor] = {}

    @classmethod
    def load(cls, path, device: str = "cpu", batch_size: int = 16) -> ColorClassifier:
        root = clip_dir(path)
        model = CLIPModel.from_pretrained(root, local_files_only=True, dtype=torch.float32)
        return cls(model.to(device), AutoTokenizer.from_pretrained(root, local_files_only=True), batch_size)

    @torch.no_grad()
    def classifier(self, cls_name: str) -> torch.Tensor:
        """(embed_dim, len(COLORS)) class embeddings of the ten colours for objects of class ``cls_name``."""
        if cls_name not in self._classifiers:
            columns = []
            for color in COLORS:
                texts = [t.format(c=color, cls=cls_name) for t in TEMPLATES]
                tok = self.tokenizer(
                    texts, padding=True, truncation=True, max_length=self.max_text_len, return_tensors="pt"
                ).to(self.device)
                feats = self.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask)
                mean = F.normalize(feats.pooler_output.float(), dim=-1).mean(dim=0)
                columns.append(mean / mean.norm())
            self._classifiers[cls_name] = torch.stack(columns, dim=1)
        return self._classifiers[cls_name]

    @torch.no_grad()
    def image_features(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        feats = []
        for start in range(0, len(crops), self.batch_size):
            pixels = clip_pixels(crops[start : start + self.batch_size], self.image_size)
            out = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
            feats.append(F.normalize(out.pooler_output.float(), dim=-1))
        return torch.cat(feats)

    def similarities(self, crops: Sequence[Image.Image], cls_names: Sequence[str]) -> torch.Tensor:
        """(N, len(COLORS)) cosine of each crop with the colour embeddings of its object's class."""
        if not crops:
            return torch.zeros(0, len(COLORS))
        feats = self.image_features(crops)
        return torch.stack([f @ self.classifier(c) for f, c in zip(feats, cls_names)]).cpu()

    def classify(self, crops: Sequence[Image.Image], cls_names: Sequence[str]) -> list[str]:
        return [COLORS[int(i)] for i in self.similarities(crops, cls_names).argmax(dim=1)]
