"""Tiny random reward-model directories, built offline with the same transformers classes as the real ones and
saved with ``save_pretrained``, so that tests exercise the scorers' real loading code.

Shared by the scorer tests and usable by the reward-service tests (``tiny_clip_dir(tmp_path)`` etc.).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers.convert_slow_tokenizer import bytes_to_unicode

# transformers model classes are imported inside each builder: importing all five model families costs seconds
# that a test using one of them should not pay.

# --------------------------------------------------------------------------------------------------- tokenizers

# Real bert-base-uncased ids of the tokens the models and rules depend on (GroundingDINO builds its text mask
# from [CLS], [SEP], "." and "?"; GIT reads "yes" and "no").
BERT_IDS = {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
    ".": 1012,
    "?": 1029,
    "no": 2053,
    "yes": 2748,
}
BERT_VOCAB_SIZE = 3000
WORDS = ["a", "red", "blue", "green", "apple", "car", "cat", "dog", "ball", "photo", "of", "and", "the", "bench"]


def bert_vocab() -> dict[str, int]:
    """A 3000-entry WordPiece vocab with the special tokens at their bert-base-uncased ids, a few whole words,
    and every letter as a word start and a continuation, so that any lowercase word tokenises."""
    vocab = [f"[unused{i}]" for i in range(BERT_VOCAB_SIZE)]
    for tok, i in BERT_IDS.items():
        vocab[i] = tok
    pieces = [c for c in "abcdefghijklmnopqrstuvwxyz,"] + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + WORDS
    free = (i for i in range(200, BERT_VOCAB_SIZE) if vocab[i].startswith("[unused"))
    for piece in dict.fromkeys(pieces):
        if piece not in vocab:
            vocab[next(free)] = piece
    return {t: i for i, t in enumerate(vocab)}


def bert_tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab=bert_vocab(), do_lower_case=True)


def clip_tokenizer(tmp: Path):
    """A character-level CLIP BPE tokenizer (no merges): every byte, with and without the end-of-word mark."""
    from transformers import CLIPTokenizer

    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (tmp / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(tmp / "vocab.json"), str(tmp / "merges.txt"))


CLIP_VOCAB = 2 * 256 + 2  # eos <|endoftext|> is the last id, so "argmax of ids" finds it (open_clip's rule)

# --------------------------------------------------------------------------------------------------- models


def tiny_clip_config(image_size: int = 32):
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config=dict(
            vocab_size=CLIP_VOCAB,
            hidden_size=32,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            hidden_act="gelu",
            bos_token_id=CLIP_VOCAB - 2,
            eos_token_id=CLIP_VOCAB - 1,
            pad_token_id=CLIP_VOCAB - 1,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8,
            hidden_act="gelu",
        ),
        projection_dim=16,
    )


def clip_files(path: Path, image_size: int = 32) -> Path:
    """Tokenizer and image processor of a tiny CLIP (no weights)."""
    from transformers import CLIPImageProcessorPil

    path.mkdir(parents=True, exist_ok=True)
    clip_tokenizer(path).save_pretrained(path)
    CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(path)
    return path


def tiny_clip_dir(path: Path, seed: int = 0) -> Path:
    from transformers import CLIPModel

    clip_files(path)
    torch.manual_seed(seed)
    CLIPModel(tiny_clip_config()).save_pretrained(path)
    return path


def tiny_gdino_config():
    from transformers import GroundingDinoConfig

    # See shared/notes/reward_models.md: decoder_layers >= 2, BERT vocab covering the special ids, a Swin with 4
    # stages at 128 px so the extra feature level is bigger than 1x1.
    return GroundingDinoConfig(
        backbone_config=dict(
            model_type="swin",
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=2,
            image_size=128,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=dict(
            model_type="bert",
            vocab_size=BERT_VOCAB_SIZE,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=10,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )


def tiny_gdino_dir(path: Path, seed: int = 0) -> Path:
    from transformers import GroundingDinoForObjectDetection, GroundingDinoImageProcessorPil, GroundingDinoProcessor

    path.mkdir(parents=True, exist_ok=True)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(size={"shortest_edge": 128, "longest_edge": 128}),
        tokenizer=bert_tokenizer(),
    )
    processor.save_pretrained(path)
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(tiny_gdino_config()).save_pretrained(path)
    return path


def tiny_git_dir(path: Path, seed: int = 0) -> Path:
    from transformers import CLIPImageProcessorPil, GitConfig, GitForCausalLM, GitProcessor

    path.mkdir(parents=True, exist_ok=True)
    processor = GitProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=bert_tokenizer(),
    )
    processor.save_pretrained(path)
    config = GitConfig(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        vocab_size=BERT_VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=101,
        eos_token_id=102,
        pad_token_id=0,
    )
    torch.manual_seed(seed)
    GitForCausalLM(config).save_pretrained(path)
    return path


ORM_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]


def qwen_like_tokenizer():
    """A word-level stand-in for the Qwen2 tokenizer: whitespace/punctuation pre-tokenisation, the words of the
    ORM question in the vocabulary, ChatML special tokens and the ``<image>`` placeholder, and "yes" / "no"."""
    from transformers import PreTrainedTokenizerFast

    words = (
        "this image is generated by a prompt : . does accurately represent the ? please answer yes or no "
        "without explanation system you are helpful assistant user red apple blue car ,"
    ).split(" ")
    vocab = {t: i for i, t in enumerate(["[UNK]"] + list(dict.fromkeys(words)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>", eos_token="<|im_end|>"
    )
    fast.add_special_tokens({"additional_special_tokens": ORM_SPECIAL[1:]})
    return fast


def tiny_orm_dir(path: Path, seed: int = 0) -> Path:
    """Tokenizer, image processor (anyres with one 32 px grid point) and a tiny random LLaVA-OneVision."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
    )

    path.mkdir(parents=True, exist_ok=True)
    tok = qwen_like_tokenizer()
    tok.save_pretrained(path)
    LlavaOnevisionImageProcessorPil(
        size={"height": 32, "width": 32},
        image_grid_pinpoints=[[32, 32], [32, 64]],
        crop_size={"height": 32, "width": 32},
    ).save_pretrained(path)
    config = LlavaOnevisionConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text_config=dict(
            model_type="qwen2",
            vocab_size=len(tok) + 8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=512,
        ),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=[[32, 32], [32, 64]],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    LlavaOnevisionForConditionalGeneration(config).save_pretrained(path)
    return path
