"""Loading Janus-Pro (or the tiny random Janus), which parameters train, and the language half as a Llama.

Both the rollout workers and the learner load the policy through :func:`load_policy`, so they hold
identical weights. Nothing here touches a model hub: a real checkpoint comes from ``model.path``; the tiny model
is built from a seed and cached on disk (one build per machine, guarded by a file lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    GenerationConfig,
    JanusConfig,
    JanusForConditionalGeneration,
    JanusVisionConfig,
    JanusVQVAEConfig,
    LlamaConfig,
    PreTrainedTokenizerBase,
)

from policy.config import ModelConfig, TinyModelConfig, check_model_dir
from policy.tokenizer import SpecialIds, build_tiny_tokenizer, tiny_corpus

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Where the parts of JanusForConditionalGeneration live (transformers >= 4.52).
LM_PREFIX = "model.language_model."
LM_HEAD = "lm_head.weight"


@dataclass
class Policy:
    """A loaded Janus model with its tokenizer and the facts every stage needs."""

    model: JanusForConditionalGeneration
    tokenizer: PreTrainedTokenizerBase
    ids: SpecialIds
    path: Path  # the HF-format directory it was loaded from

    @property
    def image_tokens(self) -> int:
        """Image tokens per image (Janus-Pro: 576)."""
        return int(self.model.config.vision_config.num_image_tokens)

    @property
    def image_grid(self) -> int:
        return int(round(self.image_tokens**0.5))

    @property
    def codebook_size(self) -> int:
        return int(self.model.config.vq_config.num_embeddings)


# --------------------------------------------------------------------------------------------------- tiny model


def tiny_janus_config(t: TinyModelConfig, vocab_size: int, ids: SpecialIds) -> JanusConfig:
    patch = 16
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_layers,
        num_attention_heads=t.num_heads,
        num_key_value_heads=t.num_kv_heads,
        max_position_embeddings=4096,
        bos_token_id=ids.bos,
        eos_token_id=ids.eos,
        pad_token_id=ids.pad,
        tie_word_embeddings=False,  # as in Janus-Pro: lm_head is its own matrix
    )
    vision = JanusVisionConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=t.image_grid * patch,
        patch_size=patch,
        projection_dim=t.hidden_size,
        depth=2,
        mlp_ratio=2.0,
        num_image_tokens=t.image_grid**2,
    )
    vq = JanusVQVAEConfig(
        embed_dim=t.vq_embed_dim,
        num_embeddings=t.codebook_size,
        latent_channels=t.vq_base_channels,
        base_channels=t.vq_base_channels,
        channel_multiplier=[1] * (t.vq_upsamples + 1),
        num_res_blocks=1,
        projection_dim=t.hidden_size,
        image_token_embed_dim=t.hidden_size,
        num_hidden_layers=2,
    )
    return JanusConfig(
        text_config=text,
        vision_config=vision,
        vq_config=vq,
        image_token_id=vocab_size - 1,
        tie_word_embeddings=False,
    )


def janus_generation_config(ids: SpecialIds, cfg_weight: float = 5.0) -> GenerationConfig:
    """What transformers' `generate(generation_mode="image")` needs (normally in generation_config.json)."""
    return GenerationConfig(
        bos_token_id=ids.bos,
        eos_token_id=ids.eos,
        pad_token_id=ids.pad,
        guidance_scale=cfg_weight,
        do_sample=True,
        generation_kwargs={"boi_token_id": ids.boi},
    )


@torch.no_grad()
def make_decoder_colour_transparent(vq) -> None:
    """Give a random VQ decoder weights under which each image token decides the colour of its own pixels.

    A randomly initialised decoder does not: its final GroupNorm(32) normalises every channel over the whole
    image (one channel per group at 32 channels), so every image has nearly the same mean colour whatever the
    tokens, and no reward on colours can be learned by a policy drawing through it. Here, with the same modules:
    the residual and attention branches are zeroed (identity blocks), each upsampling conv is the identity, and
    conv_in writes every feature twice with opposite signs (u, -u) into the two channels of one GroupNorm group
    (64 channels). A group's mean is then exactly 0, so the norm only rescales (by the feature's RMS over the
    image) and keeps each pixel's sign pattern, which conv_out (random, 1x1) turns into a colour: the colour of a
    pixel is a random function of its token's codebook entry. Weights are still random (drawn from the current
    torch RNG); only their structure is chosen.
    """
    dec = vq.decoder
    channels = dec.conv_in.out_channels
    groups = dec.norm_out.num_groups
    if channels != 2 * groups:
        raise ValueError(
            f"colour-transparent decoder needs 2 channels per GroupNorm group: vq_base_channels={2 * groups}"
        )
    for m in dec.modules():
        if m.__class__.__name__ == "JanusVQVAEResnetBlock":
            m.conv2.weight.zero_()
            m.conv2.bias.zero_()
        elif m.__class__.__name__ == "JanusVQVAEAttnBlock":
            m.proj_out.weight.zero_()
            m.proj_out.bias.zero_()
        elif m.__class__.__name__ == "JanusVQVAEConvUpsample":
            m.conv.weight.zero_()
            m.conv.weight[:, :, 1, 1] = torch.eye(channels)
            m.conv.bias.zero_()
    a = torch.randn(groups, dec.conv_in.in_channels) / dec.conv_in.in_channels**0.5
    dec.conv_in.weight.zero_()
    dec.conv_in.weight[0::2, :, 1, 1] = a
    dec.conv_in.weight[1::2, :, 1, 1] = -a
    dec.conv_in.bias.zero_()
    dec.norm_out.weight.fill_(1.0)
    dec.norm_out.bias.zero_()
    dec.conv_out.weight.zero_()
    dec.conv_out.weight[:, :, 1, 1] = torch.randn(dec.conv_out.out_channels, channels) * (4.0 / channels**0.5)
    dec.conv_out.bias.zero_()


@torch.no_grad()
def give_generation_head_trained_scale(head, logit_std: float = 0.75) -> None:
    """Redraw the generation head's weights at the scale of a trained model's head.

    At transformers' initialisation (std 0.02) a small head maps the backbone's hidden state (RMS about 1 after
    the final norm) to image-token logits with a spread of about 0.03: a uniform distribution over the codebook
    whose log-probs barely depend on the backbone, so GRPO on the image tokens has no gradient to follow (the
    trained Janus-Pro head is far from uniform). Variance-preserving weights in the first layer and
    ``logit_std``-sized logits from the second give a peaked, input-dependent distribution like a trained head's.
    """
    d_in = head.proj_out.in_features
    head.proj_out.weight.normal_(0.0, d_in**-0.5)
    head.proj_out.bias.zero_()
    # GELU of a unit normal has second moment of about 0.43
    head.vision_head.weight.normal_(0.0, logit_std / (0.43 * head.vision_head.in_features) ** 0.5)
    head.vision_head.bias.zero_()


def build_tiny_janus(
    t: TinyModelConfig, vocab_size: int | None = None
) -> tuple[JanusForConditionalGeneration, PreTrainedTokenizerBase]:
    """A tiny random Janus, deterministic from ``t.seed`` (same classes as Janus-Pro). ``vocab_size``: the text
    vocabulary (e.g. Janus-Pro's 102,400 for benchmarks at its shapes); default ``t.vocab_size``, and where that is
    0 the tiny tokenizer's, rounded up."""
    tok = build_tiny_tokenizer()
    ids = SpecialIds.from_tokenizer(tok)
    # room for the image placeholder id, rounded like real vocabularies
    vocab = vocab_size or t.vocab_size or 64 * ((len(tok) + 1 + 63) // 64)
    if vocab <= len(tok):
        raise ValueError(
            f"vocab_size {vocab} must exceed the tokenizer's {len(tok)} ids (the image placeholder takes the last id)"
        )
    config = tiny_janus_config(t, vocab, ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(t.seed)
        model = JanusForConditionalGeneration(config).eval()
        make_decoder_colour_transparent(model.model.vqmodel)
        give_generation_head_trained_scale(model.model.generation_head)
    model.generation_config = janus_generation_config(ids)
    return model, tok


# Bump when build_tiny_janus changes what it builds from the same spec: the cache key includes it (and the
# tokenizer's corpus, so that editing the built-in prompts or T2I-R1's template builds a new model).
TINY_BUILD_VERSION = 6


def tiny_janus_dir(model_cfg: ModelConfig) -> Path:
    """The tiny model's HF-format directory, built on first use (safe under concurrent processes)."""
    corpus = hashlib.sha256("\0".join(tiny_corpus()).encode()).hexdigest()[:12]
    spec = {**asdict(model_cfg.tiny), "build": TINY_BUILD_VERSION, "tokenizer_corpus": corpus}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(os.path.expanduser(model_cfg.cache_dir)) / f"tiny-janus-{key}"
    if (root / "config.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".tiny-janus-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "config.json").is_file():
            tmp = root.with_name(root.name + f".tmp{os.getpid()}")
            model, tok = build_tiny_janus(model_cfg.tiny)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "tiny_spec.json").write_text(json.dumps(spec, indent=1, sort_keys=True))
            tmp.rename(root)
    return root


# --------------------------------------------------------------------------------------------------- loading


def resolve_model_dir(model_cfg: ModelConfig) -> Path:
    if model_cfg.path is None:
        return tiny_janus_dir(model_cfg)
    check_model_dir(model_cfg.path)
    return Path(os.path.expanduser(model_cfg.path))


def load_policy(model_cfg: ModelConfig, dtype: str | None = None, device: str | torch.device = "cpu") -> Policy:
    """Load Janus and its tokenizer from the local directory the config names (never from a hub)."""
    path = resolve_model_dir(model_cfg)
    torch_dtype = DTYPES[dtype or model_cfg.dtype]
    model = JanusForConditionalGeneration.from_pretrained(path, dtype=torch_dtype, local_files_only=True)
    model = model.to(device).eval()
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tok.padding_side = "left"
    ids = SpecialIds.from_tokenizer(tok)
    gen = model.generation_config
    if not (gen.generation_kwargs or {}).get("boi_token_id"):
        # Some exported checkpoints lack the image-mode generation settings; they are fixed facts of Janus.
        model.generation_config = janus_generation_config(ids)
    return Policy(model=model, tokenizer=tok, ids=ids, path=path)


@torch.no_grad()
def decode_image_tokens(model: JanusForConditionalGeneration, tokens: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """VQ-decode [B, N] image tokens to uint8 RGB images [B, H, W, 3] (Janus-Pro: 576 tokens -> 384 px)."""
    out = []
    for chunk in tokens.split(batch_size):
        pix = model.decode_image_tokens(chunk.to(next(model.parameters()).device))  # [b, H, W, 3] in ~[-1, 1]
        out.append(((pix.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy())
    return np.concatenate(out, axis=0)


# --------------------------------------------------------------------------------------------------- training


def trainable_names(model: torch.nn.Module, prefixes: Iterable[str]) -> list[str]:
    """Names of the parameters that train: those starting with one of ``prefixes``."""
    prefixes = tuple(prefixes)
    names = [n for n, _ in model.named_parameters() if n.startswith(prefixes)]
    unused = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unused:
        top = sorted({".".join(n.split(".")[:2]) for n, _ in model.named_parameters()})
        raise ValueError(
            f"model.trainable: prefix {unused[0]!r} matches no parameter of {type(model).__name__} "
            f"(top-level names: {top})"
        )
    return names


def set_trainable(model: torch.nn.Module, prefixes: Iterable[str]) -> list[str]:
    """Freeze everything but the parameters under ``prefixes``; return the trainable names."""
    names = set(trainable_names(model, prefixes))
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    return sorted(names)


def named_trainable_parameters(model: torch.nn.Module, prefixes: Iterable[str]) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the trainable parameters, in a fixed order: what a weight sync sends."""
    wanted = set(trainable_names(model, prefixes))
    for n, p in model.named_parameters():
        if n in wanted:
            yield n, p


# --------------------------------------------------------------------------------------------------- Llama export


def llama_name(janus_name: str) -> str | None:
    """The name of a Janus parameter in the exported Llama checkpoint, or None if it is not part of it."""
    if janus_name.startswith(LM_PREFIX):
        return "model." + janus_name[len(LM_PREFIX) :]
    if janus_name == LM_HEAD:
        return LM_HEAD
    return None


def llama_config(model: JanusForConditionalGeneration) -> LlamaConfig:
    text = model.config.text_config.to_dict()
    text.pop("model_type", None)
    text["architectures"] = ["LlamaForCausalLM"]
    text["tie_word_embeddings"] = bool(model.config.tie_word_embeddings)
    text["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return LlamaConfig(**text)


def export_language_model(policy: Policy, out_dir: str | os.PathLike) -> Path:
    """Write the language half of Janus as a LlamaForCausalLM directory (config, safetensors, tokenizer).

    vLLM has no Janus model but serves this directory as a plain Llama; the image half stays in our sampler.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for n, p in policy.model.named_parameters():
        ln = llama_name(n)
        if ln is not None:
            state[ln] = p.detach().contiguous().cpu()
    if LM_HEAD not in state and not policy.model.config.tie_word_embeddings:
        raise ValueError("Janus model has no lm_head.weight; cannot export the language model")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    cfg = llama_config(policy.model)
    cfg.save_pretrained(out)
    GenerationConfig(
        bos_token_id=policy.ids.bos, eos_token_id=policy.ids.eos, pad_token_id=policy.ids.pad
    ).save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    return out
