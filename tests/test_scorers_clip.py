"""CLIPScore and HPS v2.1 scorers on tiny random CLIPs, and the open_clip -> transformers converter checked
against an independent open_clip-layout model (built here from open_clip's naming, with its own forward)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from transformers import CLIPModel

from core.records import PromptRecord
from rewards.config import RewardsConfig, ScorerConfig
from rewards.hps_convert import ConversionError, openclip_to_hf
from rewards.hps_convert import main as convert_main
from rewards.registry import build_scorer
from rewards.scorers.common import ModelDirError
from tests.tiny_reward_models import CLIP_VOCAB, clip_files, tiny_clip_config, tiny_clip_dir


class Block(nn.Module):
    """open_clip's ResidualAttentionBlock (pre-norm, nn.MultiheadAttention, c_fc/GELU/c_proj MLP)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(width, 4 * width)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(4 * width, width))]
            )
        )

    def forward(self, x, mask=None):  # x: [L, N, D], as open_clip runs it
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])

    def forward(self, x, mask=None):
        for block in self.resblocks:
            x = block(x, mask)
        return x


class Visual(nn.Module):
    def __init__(self, image_size, patch, width, layers, heads, embed):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * 0.1)
        self.positional_embedding = nn.Parameter(torch.randn((image_size // patch) ** 2 + 1, width) * 0.1)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, embed) * 0.1)

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.transformer(self.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0]) @ self.proj


class OpenClipLike(nn.Module):
    """open_clip's CLIP with a ViT image tower and the text tower at the top level."""

    def __init__(self, image_size=32, patch=8, width=32, layers=2, heads=2, embed=16, vocab=CLIP_VOCAB, ctx=77):
        super().__init__()
        self.visual = Visual(image_size, patch, width, layers, heads, embed)
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.randn(ctx, width) * 0.1)
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.randn(width, embed) * 0.1)
        self.logit_scale = nn.Parameter(torch.tensor(4.6))
        self.register_buffer("attn_mask", torch.full((ctx, ctx), float("-inf")).triu(1), persistent=False)
        for p in self.parameters():  # non-trivial norms and biases, so that a swapped name cannot go unnoticed
            if p.ndim == 1 and p is not self.logit_scale:
                p.data.normal_(0, 0.5)

    def encode_text(self, ids):
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        n = ids.shape[1]
        x = self.transformer(x.permute(1, 0, 2), self.attn_mask[:n, :n]).permute(1, 0, 2)
        return self.ln_final(x)[torch.arange(ids.shape[0]), ids.argmax(dim=-1)] @ self.text_projection


def openclip_cosine(model: OpenClipLike, pixel_values, ids):
    img = nn.functional.normalize(model.visual(pixel_values), dim=-1)
    txt = nn.functional.normalize(model.encode_text(ids), dim=-1)
    return img @ txt.T


def images(n=3, size=40, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def reward_cfg(name, path, **kw) -> RewardsConfig:
    cfg = RewardsConfig()
    setattr(cfg, name, ScorerConfig(enabled=True, path=str(path), **kw))
    return cfg


def test_converter_matches_open_clip_forward():
    torch.manual_seed(0)
    oc = OpenClipLike().eval()
    hf = CLIPModel(tiny_clip_config()).eval()
    hf.load_state_dict(openclip_to_hf(oc.state_dict()), strict=True)
    pix = torch.randn(2, 3, 32, 32)
    ids = torch.tensor([[CLIP_VOCAB - 2, 5, 9, 11, CLIP_VOCAB - 1], [CLIP_VOCAB - 2, 7, CLIP_VOCAB - 1, 0, 0]])
    with torch.no_grad():
        want = openclip_cosine(oc, pix, ids)
        out = hf(input_ids=ids, pixel_values=pix)
        got = out.logits_per_image / hf.logit_scale.exp()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert hf.logit_scale.item() == pytest.approx(4.6)


def test_converter_rejects_unknown_layouts():
    sd = OpenClipLike().state_dict()
    with pytest.raises(ConversionError, match="visual.attnpool.x"):
        openclip_to_hf({**sd, "visual.attnpool.x": torch.zeros(1)})
    with pytest.raises(ConversionError, match="missing visual.proj"):
        openclip_to_hf({k: v for k, v in sd.items() if k != "visual.proj"})


def test_clip_scorer_matches_model_forward(tmp_path):
    path = tiny_clip_dir(tmp_path / "clip")
    scorer = build_scorer("clip", reward_cfg("clip", path, batch_size=2))
    rng = np.random.default_rng(3)
    imgs = images(3) + [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(384, 384, 3), (30, 50, 3)]]
    prompt = PromptRecord(prompt="a red apple")
    got = [s.score for s in scorer.score(prompt, imgs)]
    # Independent path: the model's joint forward on all images at once (no batching, no feature helpers).
    model = CLIPModel.from_pretrained(path).eval()
    pix = scorer.image_processor(images=[Image.fromarray(a) for a in imgs], return_tensors="pt").pixel_values
    ids = scorer.tokenizer(["a red apple"], return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=ids.input_ids, attention_mask=ids.attention_mask, pixel_values=pix)
    want = (out.logits_per_image[:, 0] / model.logit_scale.exp()).tolist()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(set(np.round(got, 6))) == 5  # different images, different scores


def test_hps_scorer_converts_open_clip_checkpoint(tmp_path):
    torch.manual_seed(1)
    oc = OpenClipLike().eval()
    path = clip_files(tmp_path / "hps")
    tiny_clip_config().save_pretrained(path)
    # The HPS release layout: a checkpoint dict with the open_clip state dict under "state_dict".
    torch.save({"state_dict": oc.state_dict()}, path / "HPS_v2.1_compressed.pt")
    scorer = build_scorer("hps", reward_cfg("hps", path, batch_size=2))
    assert scorer.name == "hps"
    imgs = images(3)
    got = [s.score for s in scorer.score(PromptRecord(prompt="a blue car"), imgs)]
    pix = scorer.image_processor(images=[Image.fromarray(a) for a in imgs], return_tensors="pt").pixel_values
    ids = scorer.tokenizer(["a blue car"], return_tensors="pt").input_ids
    with torch.no_grad():
        want = openclip_cosine(oc, pix, ids)[:, 0].tolist()
    np.testing.assert_allclose(got, want, atol=1e-5)

    # The CLI writes model.safetensors next to the config; a later load uses it and scores the same.
    out = tmp_path / "hps-converted"
    convert_main([str(path / "HPS_v2.1_compressed.pt"), "--config-dir", str(path), "--out", str(out)])
    assert (out / "model.safetensors").is_file() and not (out / "HPS_v2.1_compressed.pt").exists()
    again = build_scorer("hps", reward_cfg("hps", out))
    np.testing.assert_allclose([s.score for s in again.score(PromptRecord(prompt="a blue car"), imgs)], got, atol=1e-6)


@pytest.mark.parametrize("name", ["clip", "hps"])
def test_missing_or_incomplete_directory(tmp_path, name):
    with pytest.raises(ModelDirError, match=f"rewards.{name}.path is not set"):
        build_scorer(name, RewardsConfig())
    with pytest.raises(ModelDirError, match="does not exist"):
        build_scorer(name, reward_cfg(name, tmp_path / "nowhere"))
    clip_files(tmp_path / "partial")
    with pytest.raises(ModelDirError, match=r"'.*partial' is incomplete, missing config.json; model.safetensors"):
        build_scorer(name, reward_cfg(name, tmp_path / "partial"))
