"""Convert an open_clip CLIP state dict (the layout of HPS v2.1's ``HPS_v2.1_compressed.pt``) to transformers'
``CLIPModel`` parameter names.

open_clip's ``CLIP`` (model.py / transformer.py, as vendored by HPSv2) names its parts: ``visual.conv1`` (patch
conv, no bias), ``visual.class_embedding``, ``visual.positional_embedding``, ``visual.ln_pre``,
``visual.transformer.resblocks.{i}.{ln_1, attn (nn.MultiheadAttention: in_proj_weight/bias, out_proj), ln_2,
mlp.c_fc, mlp.c_proj}``, ``visual.ln_post``, ``visual.proj`` ([width, embed], used as ``x @ proj``); the text
tower sits at the top level: ``token_embedding``, ``positional_embedding``, ``transformer.resblocks.{i}...``,
``ln_final``, ``text_projection`` ([width, embed]); and ``logit_scale``. transformers splits the fused q/k/v
projection, stores projections as ``nn.Linear`` weights ([embed, width], hence the transposes) and calls the
norms ``pre_layrnorm`` (sic), ``layer_norm1/2``, ``post_layernorm``, ``final_layer_norm``.

CLI: ``python -m rewards.hps_convert HPS_v2.1_compressed.pt --config-dir DIR [--out OUT]`` writes
``model.safetensors`` next to the config (or into OUT, copying DIR's config, tokenizer and preprocessor files),
so that later loads need no conversion.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch

# open_clip block part -> transformers encoder-layer part (everything except the fused attention input).
_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_TOP = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
_RESBLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


class ConversionError(ValueError):
    """The state dict is not an open_clip CLIP with a ViT image tower (unknown or missing keys)."""


def unwrap_checkpoint(obj: object) -> dict[str, torch.Tensor]:
    """The state dict inside an open_clip / HPS checkpoint (``{"state_dict": ...}`` or a plain state dict),
    without the ``module.`` prefix a DistributedDataParallel save leaves."""
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConversionError("expected a state dict of tensors, or a checkpoint dict with one under 'state_dict'")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def openclip_to_hf(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split / transpose) an open_clip CLIP state dict into ``CLIPModel`` names. Raises
    ConversionError on a key it does not know, so that nothing is silently dropped."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        if key in _TOP:
            out[_TOP[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t().contiguous()
        elif key == "attn_mask":  # a buffer (the causal text mask) in old open_clip saves; transformers builds its own
            continue
        elif m := _RESBLOCK.match(key):
            tower = "vision_model" if m.group(1) else "text_model"
            prefix = f"{tower}.encoder.layers.{m.group(2)}."
            part, _, kind = m.group(3).rpartition(".")
            if part == "attn" and kind in ("in_proj_weight", "in_proj_bias"):  # fused q, k, v (nn.MultiheadAttention)
                for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}.{kind.removeprefix('in_proj_')}"] = chunk.contiguous()
            elif part in _BLOCK and kind in ("weight", "bias"):
                out[f"{prefix}{_BLOCK[part]}.{kind}"] = value
            else:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"not an open_clip ViT CLIP state dict; unknown keys: {', '.join(sorted(unknown)[:8])}")
    # Block-level completeness is checked when the result is loaded strictly into a CLIPModel.
    missing = [k for k in list(_TOP) + list(_TRANSPOSED) if k not in sd and k != "logit_scale"]
    if missing:
        raise ConversionError(f"open_clip state dict is missing {', '.join(missing)}")
    return out


def load_openclip_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Read an open_clip / HPS ``.pt`` checkpoint (tensors only: ``weights_only`` loading) in transformers names."""
    return openclip_to_hf(unwrap_checkpoint(torch.load(path, map_location="cpu", weights_only=True)))


def main(argv: list[str] | None = None) -> None:
    from safetensors.torch import save_file
    from transformers import CLIPConfig, CLIPModel

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path, help="open_clip / HPS checkpoint, e.g. HPS_v2.1_compressed.pt")
    ap.add_argument(
        "--config-dir",
        type=Path,
        required=True,
        help="HF-format CLIP directory of the same architecture (config.json, tokenizer, preprocessor), "
        "e.g. laion/CLIP-ViT-H-14-laion2B-s32B-b79K for HPS v2.1",
    )
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: --config-dir)")
    args = ap.parse_args(argv)
    out = args.out or args.config_dir
    sd = load_openclip_checkpoint(args.checkpoint)
    model = CLIPModel(CLIPConfig.from_pretrained(args.config_dir, local_files_only=True))
    model.load_state_dict(sd, strict=True)  # shape or name mismatches with the config fail here, not at scoring
    out.mkdir(parents=True, exist_ok=True)
    if out != args.config_dir:
        for f in args.config_dir.iterdir():
            if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".pt")):
                shutil.copy2(f, out / f.name)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    print(f"wrote {out / 'model.safetensors'}")


if __name__ == "__main__":
    main()
