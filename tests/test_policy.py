"""The policy package: tiny random Janus, loading, trainable parameters, the Llama export."""

import pytest
import torch
from transformers import JanusForConditionalGeneration, LlamaForCausalLM

from core.config import ConfigError
from policy.config import ModelConfig, TinyModelConfig
from policy.model import (
    build_tiny_janus,
    export_language_model,
    llama_name,
    load_policy,
    named_trainable_parameters,
    set_trainable,
    tiny_janus_dir,
)
from policy.tokenizer import BOI, BOS, EOS, PAD


def test_tiny_janus_is_deterministic_from_its_seed():
    a, _ = build_tiny_janus(TinyModelConfig(seed=3))
    b, _ = build_tiny_janus(TinyModelConfig(seed=3))
    c, _ = build_tiny_janus(TinyModelConfig(seed=4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_loaded_tiny_policy_shapes(tiny_policy, tiny_model_cfg):
    p = tiny_policy
    t = tiny_model_cfg.tiny
    text = p.model.config.text_config
    assert text.hidden_size // text.num_attention_heads == 64  # vLLM's CPU attention rejects head dim 16
    assert p.image_tokens == t.image_grid**2 and p.codebook_size == t.codebook_size
    assert p.model.model.generation_head.vision_head.out_features == t.codebook_size
    # Special tokens exist under Janus-Pro's strings and are the model's BOS/EOS/PAD.
    tok = p.tokenizer
    assert [tok.convert_ids_to_tokens(i) for i in (p.ids.bos, p.ids.eos, p.ids.pad, p.ids.boi)] == [BOS, EOS, PAD, BOI]
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (p.ids.bos, p.ids.eos, p.ids.pad)
    assert p.model.generation_config.generation_kwargs["boi_token_id"] == p.ids.boi
    # Any text round-trips through the byte-level tokenizer, specials are single tokens.
    text_in = 'A "red" café, 3 birds\n\nAssistant:'
    ids = tok(text_in, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text_in
    x = tok("x", add_special_tokens=False).input_ids
    assert len(x) == 1 and tok(BOS + "x" + BOI, add_special_tokens=False).input_ids == [p.ids.bos, x[0], p.ids.boi]


def test_every_process_gets_identical_weights(tiny_model_cfg, tiny_policy):
    again = load_policy(tiny_model_cfg)
    sa, sb = tiny_policy.model.state_dict(), again.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert tiny_janus_dir(tiny_model_cfg) == tiny_policy.path


def test_decoded_image_size(tiny_policy, tiny_model_cfg):
    t = tiny_model_cfg.tiny
    toks = torch.zeros(2, tiny_policy.image_tokens, dtype=torch.long)
    img = tiny_policy.model.decode_image_tokens(toks)
    side = t.image_grid * 2**t.vq_upsamples
    assert img.shape == (2, side, side, 3)


def test_trainable_is_the_llama_backbone(tiny_model_cfg):
    p = load_policy(tiny_model_cfg)
    names = set(set_trainable(p.model, tiny_model_cfg.trainable))
    all_names = {n for n, _ in p.model.named_parameters()}
    llm = {n for n in all_names if n.startswith("model.language_model.")} | {"lm_head.weight"}
    assert names == llm
    # docs/ALGORITHM.md §8: everything on the image / understanding side is frozen.
    for frozen in (
        "model.vision_model.",
        "model.aligner.",
        "model.vqmodel.",
        "model.generation_embeddings.",
        "model.generation_aligner.",
        "model.generation_head.",
    ):
        assert any(n.startswith(frozen) for n in all_names)
        assert not any(n.startswith(frozen) for n in names)
    assert all(p.requires_grad == (n in names) for n, p in p.model.named_parameters())
    assert [n for n, _ in named_trainable_parameters(p.model, tiny_model_cfg.trainable)] == [
        n for n, _ in p.model.named_parameters() if n in names
    ]
    with pytest.raises(ValueError, match="matches no parameter"):
        set_trainable(p.model, ["model.lang_model."])


def test_llama_export_gives_the_same_text_logits(tiny_policy, tmp_path):
    out = export_language_model(tiny_policy, tmp_path / "llama")
    llama = LlamaForCausalLM.from_pretrained(out, local_files_only=True).eval()
    ids = torch.tensor([[tiny_policy.ids.bos, 70, 71, 72, 73]])
    with torch.no_grad():
        ref = tiny_policy.model(input_ids=ids).logits
        got = llama(input_ids=ids).logits
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    assert llama_name("model.language_model.layers.0.mlp.up_proj.weight") == "model.layers.0.mlp.up_proj.weight"
    assert llama_name("lm_head.weight") == "lm_head.weight"
    assert llama_name("model.generation_head.proj_out.weight") is None


def test_missing_model_path_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(ModelConfig(path=str(tmp_path / "absent")))


def test_loads_a_saved_hf_directory_as_a_real_checkpoint(tiny_policy, tmp_path):
    # A user's model.path is an HF-format directory: the same loader must accept it.
    d = tmp_path / "ckpt"
    tiny_policy.model.save_pretrained(d)
    tiny_policy.tokenizer.save_pretrained(d)
    p = load_policy(ModelConfig(path=str(d)))
    assert isinstance(p.model, JanusForConditionalGeneration) and p.ids == tiny_policy.ids
    assert torch.equal(p.model.lm_head.weight, tiny_policy.model.lm_head.weight)


def test_tiny_decoder_lets_each_token_choose_its_pixels_colour(tiny_policy, tiny_model_cfg):
    """make_decoder_colour_transparent: a token decides the colour of its own patch; GroupNorm cannot erase it."""
    p, t = tiny_policy, tiny_model_cfg.tiny
    n, patch = p.image_tokens, 2**t.vq_upsamples
    with torch.no_grad():
        uniform = p.model.decode_image_tokens(torch.arange(p.codebook_size)[:, None].repeat(1, n))
    # one code everywhere -> one colour everywhere; different codes -> different colours
    assert torch.allclose(uniform, uniform[:, :1, :1, :].expand_as(uniform), atol=1e-5)
    colours = uniform[:, 0, 0, :]
    assert torch.cdist(colours, colours).add(torch.eye(len(colours)) * 9).min() > 1e-3
    assert (colours.max(0).values > 0.9).all() and (colours.min(0).values < -0.9).all()  # the whole RGB range
    # swapping two tokens swaps their patches (up to the image-wide RMS scale, which a swap keeps)
    a = torch.randint(0, p.codebook_size, (1, n), generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b[0, 0], b[0, n - 1] = a[0, n - 1], a[0, 0]
    with torch.no_grad():
        ia, ib = p.model.decode_image_tokens(a)[0], p.model.decode_image_tokens(b)[0]
    side = t.image_grid * patch
    torch.testing.assert_close(ib[:patch, :patch], ia[side - patch :, side - patch :], atol=1e-5, rtol=0)
    torch.testing.assert_close(ib[patch : side - patch], ia[patch : side - patch], atol=1e-5, rtol=0)
