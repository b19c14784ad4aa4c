"""Tiny random evaluator checkpoints for the benchmark-metric tests, built offline with the transformers classes
the real evaluators load and saved with ``save_pretrained`` (the CLIP builders are shared with the reward tests,
tests/tiny_reward_models.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

# Eight queries over five classes: top-100 keeps all 40 (query, class) pairs.
TINY_DETECTOR_CLASSES = ["person", "dog", "cat", "car", "apple"]


def tiny_mask2former_config(num_labels: int = len(TINY_DETECTOR_CLASSES)):
    from transformers import Mask2FormerConfig

    # GroupNorm(32) in the pixel decoder needs feature sizes that are multiples of 32.
    return Mask2FormerConfig(
        backbone_config=dict(
            model_type="swin",
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=7,
            image_size=224,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        num_queries=8,
        num_labels=num_labels,
    )


def tiny_mask2former_dir(path: Path, seed: int = 0) -> Path:
    from transformers import Mask2FormerForUniversalSegmentation

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(tiny_mask2former_config())
    # A random model's class probabilities are near uniform and its mask logits near 0 (sigmoid 0.5): sharper
    # class and mask heads give detections above GenEval's 0.3 threshold, so the rules run on real detections,
    # and masks whose pixels are clearly in or out.
    with torch.no_grad():
        model.class_predictor.weight.mul_(40.0)
        last = model.model.transformer_module.decoder.mask_predictor.mask_embedder.get_submodule("2.0")
        last.weight.mul_(2000.0)
        last.bias.mul_(2000.0)
    model.save_pretrained(path)
    return path


def block_scene(h: int, w: int, seed: int) -> np.ndarray:
    """A uint8 RGB image of three flat colour blocks: a random Mask2Former's masks follow such edges (on noise
    they cover the whole image), so detections have partial masks and boxes."""
    rng = np.random.default_rng(seed)
    im = np.empty((h, w, 3), np.uint8)
    im[:] = rng.integers(0, 256, 3)
    im[: h // 2, : w // 2] = rng.integers(0, 256, 3)
    im[h // 3 :, 2 * w // 3 :] = rng.integers(0, 256, 3)
    return im


# ------------------------------------------------------------------------------------------ WISE judge

# Whole-answer pieces as single tokens, in byte-level symbols (Ġ = space, Ċ = newline); decoding reaches them, which
# is all the rewired judge below needs.
JUDGE_PIECES = ["Score:", "Ġ1", "Ġ0", "Consistency:", "Ġ2", "ĊRealism:", "ĊAestheticĠQuality:", "Ġhmm", "Ġmaybe"]
JUDGE_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Our own minimal chat template in the shape of Qwen's: ChatML turns, an image item as vision-start / image-pad /
# vision-end, and with enable_thinking=False an empty think block after the generation prompt.
JUDGE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}"
    "{% if c.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c.text }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


def judge_tokenizer():
    """Qwen3.5's tokenizer class (byte-level BPE) on a tiny vocabulary: the 256 byte symbols without merges (any
    text encodes and decodes exactly), whole answer pieces such as "Score:" and " 1", ChatML and vision special
    tokens, and <think> / </think> as ordinary added tokens, kept when special tokens are skipped as in Qwen's."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.qwen3_5.tokenization_qwen3_5 import Qwen3_5Tokenizer

    symbols = list(bytes_to_unicode().values()) + JUDGE_PIECES
    tok = Qwen3_5Tokenizer(
        vocab={s: i for i, s in enumerate(symbols)},
        merges=[],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tok.add_special_tokens({"additional_special_tokens": JUDGE_SPECIAL})
    tok.add_tokens(["<think>", "</think>"])
    tok.chat_template = JUDGE_TEMPLATE
    return tok


def tiny_judge_config(tok):
    from transformers import Qwen3_5MoeConfig

    ids = tok.convert_tokens_to_ids
    return Qwen3_5MoeConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=64,
            num_hidden_layers=2,
            full_attention_interval=2,  # one of each
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            linear_key_head_dim=8,
            linear_value_head_dim=8,
            linear_num_key_heads=2,
            linear_num_value_heads=2,
            moe_intermediate_size=16,
            shared_expert_intermediate_size=16,
            num_experts=4,
            num_experts_per_tok=2,
            max_position_embeddings=2048,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "partial_rotary_factor": 0.5,
                "mrope_section": [2, 1, 1],
                "mrope_interleaved": True,
            },
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=32,
            num_heads=2,
            patch_size=8,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=64,
            num_position_embeddings=64,
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )


def tiny_judge_dir(path: Path, seed: int = 0, chain: dict[str, str] | None = None) -> Path:
    """Tokenizer (with its chat template), image processor (8-px patches, 2x2 merge) and a tiny random
    Qwen3.5-MoE. With ``chain`` the model is rewired into a lookup table so that greedy decoding answers a fixed
    text: every output projection of attention, linear attention and experts is zeroed, so the last hidden
    state is the current token's embedding; each chain source token gets its own unit embedding direction and
    the LM head maps that direction to ``chain[source]`` (every other logit 0), e.g. {"Ċ": "Score:",
    "Score:": "Ġ1", "Ġ1": "<|im_end|>"} answers "Score: 1" after a prompt ending in a newline."""
    from transformers import Qwen2VLImageProcessorPil, Qwen3_5MoeForConditionalGeneration

    path.mkdir(parents=True, exist_ok=True)
    tok = judge_tokenizer()
    tok.save_pretrained(path)
    Qwen2VLImageProcessorPil(
        patch_size=8, temporal_patch_size=2, merge_size=2, size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64}
    ).save_pretrained(path)
    torch.manual_seed(seed)
    model = Qwen3_5MoeForConditionalGeneration(tiny_judge_config(tok))
    if chain:
        text = model.model.language_model
        with torch.no_grad():
            for name, p in text.layers.named_parameters():
                if name.endswith(("o_proj.weight", "out_proj.weight", "down_proj", "down_proj.weight")):
                    p.zero_()
            emb, head = text.embed_tokens.weight, model.lm_head.weight
            assert len(chain) <= emb.shape[1], "one embedding direction per chain entry"
            head.zero_()
            for k, (a, b) in enumerate(chain.items()):
                emb[tok.convert_tokens_to_ids(a)] = torch.eye(emb.shape[1])[k]
                head[tok.convert_tokens_to_ids(b), k] = 1.0
    model.save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------ WISE checkout

# A judge script in the layout of WISE's (build_evaluation_messages returning literal messages, the record's
# fields in an f-string, the image as an image_url part), with a rubric in our own words: WISE has no licence,
# so none of its text is in this project.
FAKE_JUDGE_SCRIPT = '''import json


def unrelated_helper(x):
    return x


def build_evaluation_messages(prompt_data, image_base64):
    return [
        {"role": "system", "content": [{"type": "text", "text": "You grade pictures."}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": f"""{RUBRIC_LINE}
Asked for: "{prompt_data['Prompt']}"
Meaning: "{prompt_data['Explanation']}"
Reply with one line.""",
                },
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image_base64}"}},
            ],
        },
    ]
'''

# Made-up prompt records: (prompt_id, prompt, explanation); ids pick one or two per category of each protocol.
FAKE_VERIFIED = {
    "data_verified/cultural_common_sense_verified.json": [
        (1, "a lantern for the autumn fair", "paper lantern"),
        (2, "the dish of the harvest day", "a bread loaf"),
    ],
    "data_verified/spatio-temporal_reasoning_verified.json": [
        (401, "a garden at dawn", "low warm light"),
        (521, "the view from below a bridge", "arch above"),
    ],
    "data_verified/natural_science_verified.json": [
        (641, "a seed after a week in water", "a sprout"),
        (761, "ice left in the sun", "a puddle"),
        (881, "iron left in the rain", "rust"),
    ],
}
FAKE_LEGACY = {
    "WISE_legacy/data/cultural_common_sense.json": [(1, "a lantern for the autumn fair", "paper lantern")],
    "WISE_legacy/data/spatio-temporal_reasoning.json": [
        (401, "a garden at dawn", "low warm light"),
        (568, "the view from below a bridge", "arch above"),
    ],
    "WISE_legacy/data/natural_science.json": [
        (701, "a seed after a week in water", "a sprout"),
        (801, "ice left in the sun", "a puddle"),
        (901, "iron left in the rain", "rust"),
    ],
}


def fake_wise_checkout(root: Path) -> Path:
    """A directory in the layout of a WISE checkout, with made-up prompts and rubrics (both protocols)."""
    import json

    for files in (FAKE_VERIFIED, FAKE_LEGACY):
        for rel, rows in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(
                json.dumps(
                    [
                        {
                            "prompt_id": pid,
                            "Prompt": p,
                            "Explanation": e,
                            "Category": "made up",
                            "Subcategory": "made up",
                        }
                        for pid, p, e in rows
                    ]
                )
            )
    (root / "vllm_eval.py").write_text(FAKE_JUDGE_SCRIPT.replace("{RUBRIC_LINE}", "Give Score: 0 or Score: 1."))
    (root / "WISE_legacy" / "gpt_eval.py").write_text(
        FAKE_JUDGE_SCRIPT.replace("{RUBRIC_LINE}", "Rate Consistency, Realism and Aesthetic Quality from 0 to 2.")
    )
    return root
