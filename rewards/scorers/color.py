"""Embedded colour reward: how much of the image shows the colour words of the prompt.

A pure pixel rule (no weights), continuous and smooth in the pixel values so that any change of colour moves it:

* The prompt's colour words (whole words, case-insensitive, e.g. "red", "grey" = "gray", "golden" = "gold")
  are looked up in :data:`COLOR_PROTOTYPES`, in order of first appearance, without repeats.
* Every pixel and every prototype are converted to CIE L*a*b* (sRGB, D65), a space where Euclidean distance
  (Delta E 1976) roughly follows perceived difference. A colour name covers a region, not a point: a pixel
  within ``radius`` of the prototype is fully that colour; beyond it, closeness falls off as the Cauchy kernel
  ``1 / (1 + ((dE - radius) / scale)^2)`` (0.5 at ``radius + scale``). The kernel's heavy tails mean that even a
  dull greyish pixel moves the score a little when it gets redder (a Gaussian would be flat zero out there and
  give a random policy nothing to climb); the score is continuous in the pixel values.
* coverage(c) = mean closeness over all pixels (so the score does not depend on the image size).
* With k colour words, each should cover its share 1/k of the image:
  ``score = mean_c min(1, k * coverage(c))``. One colour: score = coverage. "a red car and a blue house":
  half red / half blue scores about 1, all red about 0.5.
* No colour word in the prompt: every image scores 0.0 (details say why). The score is then constant within the
  group, so after GRPO's group normalisation this scorer adds nothing to the advantage, which is the honest
  answer for a rule that has nothing to judge.

Deterministic: plain float64 numpy arithmetic on the pixels.
Caveats: "orange" is read as a colour even in "an orange" (the fruit). A policy can only climb this reward if
its image decoder lets the image tokens change the colours. A randomly initialised Janus VQ decoder does not (its
final GroupNorm fixes every image's per-channel statistics: "a red apple" scored 0.110 to 0.118 over random
token images); the tiny Janus is therefore built with a colour-transparent decoder
(policy.model.make_decoder_colour_transparent), where single-code images reach 1.0 for every colour word and
random-token images average about 0.2.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from core.records import PromptRecord
from rewards.base import ImageScore, Scorer, check_images

# Prototype sRGB values: a focal example of each basic colour term (the pure primaries for red, green and blue,
# close to the CSS named colours otherwise). A name covers a region around its prototype (see ColorScorer.radius).
COLOR_PROTOTYPES: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "orange": (255, 140, 0),
    "yellow": (255, 230, 0),
    "green": (0, 170, 0),
    "blue": (0, 50, 255),
    "purple": (128, 0, 160),
    "violet": (140, 70, 230),
    "pink": (255, 150, 190),
    "brown": (130, 80, 35),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "gold": (212, 175, 55),
    "silver": (192, 192, 192),
    "cyan": (0, 220, 230),
    "turquoise": (64, 224, 208),
    "teal": (0, 128, 128),
    "magenta": (255, 0, 255),
    "beige": (225, 205, 165),
    "maroon": (128, 0, 0),
    "navy": (0, 0, 128),
}
COLOR_ALIASES = {"grey": "gray", "golden": "gold"}


def color_words(prompt: str) -> list[str]:
    """The colour terms of ``prompt`` (canonical names), in order of first appearance, without repeats."""
    found: list[str] = []
    for word in re.findall(r"[a-z]+", prompt.lower()):
        name = COLOR_ALIASES.get(word, word)
        if name in COLOR_PROTOTYPES and name not in found:
            found.append(name)
    return found


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB [..., 3] -> CIE L*a*b* [..., 3] (D65 white, float64)."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])  # relative to the D65 white point
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def color_coverage(image: np.ndarray, colors: Sequence[str], radius: float, scale: float) -> np.ndarray:
    """Mean per-pixel closeness of ``image`` (uint8 H x W x 3) to each colour: an array of len(colors)."""
    lab = srgb_to_lab(image.reshape(-1, 3))  # [P, 3]
    protos = srgb_to_lab(np.array([COLOR_PROTOTYPES[c] for c in colors], dtype=np.uint8))  # [k, 3]
    de = np.sqrt(((lab[:, None, :] - protos[None, :, :]) ** 2).sum(-1))  # Delta E 1976, [P, k]
    return (1.0 / (1.0 + (np.maximum(de - radius, 0.0) / scale) ** 2)).mean(axis=0)


def color_score(coverage: np.ndarray) -> float:
    """Each of the k colours should cover its share 1/k of the image."""
    k = len(coverage)
    return float(np.minimum(1.0, k * coverage).mean())


class ColorScorer(Scorer):
    name = "color"
    version = "1"

    def __init__(self, radius: float = 20.0, scale: float = 30.0):
        if radius < 0 or scale <= 0:
            raise ValueError(f"colour radius must be >= 0 and scale > 0 (Delta E units), got {radius}, {scale}")
        self.radius = float(radius)
        self.scale = float(scale)

    def score(self, prompt: PromptRecord, images: list[np.ndarray]) -> list[ImageScore]:
        check_images(images)
        colors = color_words(prompt.prompt)
        if not colors:
            return [ImageScore(0.0, {"colors": [], "note": "no colour word in the prompt"}) for _ in images]
        out = []
        for im in images:
            cov = color_coverage(im, colors, self.radius, self.scale)
            out.append(ImageScore(color_score(cov), {"colors": colors, "coverage": [round(float(x), 6) for x in cov]}))
        return out
