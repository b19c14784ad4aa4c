"""The BiCoT-GRPO loss against a hand-written reference (explicit loops over samples and tokens, gradients
derived by hand), a finite-difference check, and T2I-R1's one-update special case."""

import math

import pytest
import torch

from learner.config import LossConfig
from learner.loss import LevelTerms, active_levels, grpo_loss

B, T_SEM, T_IMG = 3, 5, 7


def _random_levels(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in (("semantic", T_SEM), ("token", T_IMG)):
        logp = -torch.rand(B, t, generator=g, dtype=dtype) * 3
        # behaviour log-probs off by up to +-0.6 so that ratios leave [0.8, 1.2] and clipping engages
        old = logp + (torch.rand(B, t, generator=g, dtype=dtype) - 0.5) * 1.2
        ref = logp + (torch.rand(B, t, generator=g, dtype=dtype) - 0.5)
        lengths = torch.randint(1, t + 1, (B,), generator=g)
        mask = torch.arange(t)[None, :] < lengths[:, None]
        out[name] = LevelTerms(logp=logp.clone().requires_grad_(True), old_logp=old, mask=mask, ref_logp=ref)
    adv = torch.randn(B, generator=g, dtype=dtype)
    return out, adv


def _reference(levels, adv, cfg: LossConfig):
    """Loss and d loss / d logp per level, one token at a time, with the derivative worked by hand."""
    use = ["semantic", "token"] if cfg.levels == "both" else [cfg.levels]
    weight = {"semantic": cfg.semantic_weight, "token": cfg.token_weight}
    use = [n for n in use if cfg.levels != "both" or weight[n] > 0]
    per_sample_sum = [0.0] * B
    per_sample_count = [0] * B
    dsum = {n: torch.zeros_like(levels[n].old_logp) for n in use}  # d (per-sample weighted sum) / d logp
    for n in use:
        t = levels[n]
        for b in range(B):
            a = float(adv[b])
            for j in range(t.mask.shape[1]):
                if not t.mask[b, j]:
                    continue
                lp, old, ref = float(t.logp.detach()[b, j]), float(t.old_logp[b, j]), float(t.ref_logp[b, j])
                ratio = math.exp(lp - old)
                clipped_ratio = min(max(ratio, 1 - cfg.clip_low), 1 + cfg.clip_high)
                if -a * ratio >= -a * clipped_ratio:
                    pg, dpg = -a * ratio, -a * ratio
                else:  # the clipped branch wins, which only happens when the clamp is saturated: no gradient
                    pg, dpg = -a * clipped_ratio, 0.0
                kl = math.exp(ref - lp) - (ref - lp) - 1
                dkl = -math.exp(ref - lp) + 1
                per_sample_sum[b] += weight[n] * (pg + cfg.beta * kl)
                per_sample_count[b] += 1
                dsum[n][b, j] = weight[n] * (dpg + cfg.beta * dkl)
    if cfg.aggregation == "token_mean":
        total = sum(per_sample_count)
        loss = sum(per_sample_sum) / total
        grads = {n: d / total for n, d in dsum.items()}
    else:
        samples = [b for b in range(B) if per_sample_count[b] > 0]
        loss = sum(per_sample_sum[b] / per_sample_count[b] for b in samples) / len(samples)
        grads = {n: torch.stack([d[b] / per_sample_count[b] / len(samples) for b in range(B)]) for n, d in dsum.items()}
    return loss, grads


CONFIGS = [
    LossConfig(),
    LossConfig(aggregation="seq_mean"),
    LossConfig(beta=0.0),
    LossConfig(beta=0.3, clip_low=0.1, clip_high=0.28, semantic_weight=0.5, token_weight=2.0),
    LossConfig(aggregation="seq_mean", semantic_weight=3.0, token_weight=0.25, beta=0.05),
    LossConfig(levels="semantic"),
    LossConfig(levels="token", aggregation="seq_mean"),
    LossConfig(semantic_weight=0.0),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.aggregation}-{c.levels}-b{c.beta}-w{c.semantic_weight},{c.token_weight}")
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_gradient_match_hand_written_reference(cfg, seed):
    levels, adv = _random_levels(seed)
    loss, stats = grpo_loss(levels, adv, cfg)
    loss.backward()
    ref_loss, ref_grads = _reference(levels, adv, cfg)
    assert float(loss.detach()) == pytest.approx(ref_loss, rel=1e-12, abs=1e-12)
    for name in ("semantic", "token"):
        grad = levels[name].logp.grad
        if name in ref_grads:
            torch.testing.assert_close(grad, ref_grads[name], rtol=1e-10, atol=1e-12)
        else:  # an inactive level contributes nothing
            assert grad is None or torch.count_nonzero(grad) == 0
    assert stats["loss"] == pytest.approx(ref_loss)


def test_clipping_engages_in_the_random_setting():
    levels, adv = _random_levels(0)
    _, stats = grpo_loss(levels, adv, LossConfig())
    assert 0 < stats["token/clip_frac"] < 1 and 0 < stats["semantic/clip_frac"] < 1


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean"])
def test_finite_difference_gradient(aggregation):
    levels, adv = _random_levels(3)
    cfg = LossConfig(aggregation=aggregation, beta=0.2, clip_low=0.15, clip_high=0.3, semantic_weight=0.7)

    def f(sem, tok):
        lv = {
            "semantic": LevelTerms(sem, levels["semantic"].old_logp, levels["semantic"].mask, levels["semantic"].ref_logp),
            "token": LevelTerms(tok, levels["token"].old_logp, levels["token"].mask, levels["token"].ref_logp),
        }
        return grpo_loss(lv, adv, cfg)[0]

    inputs = (levels["semantic"].logp.detach().clone().requires_grad_(True),
              levels["token"].logp.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(f, inputs, eps=1e-7, atol=1e-6)


def test_t2i_r1_special_case_gradient():
    """One on-policy update (behaviour = current): ratio 1, no clipping, and the gradient of the loss is
    -(1/N) * sum_tokens (A * grad logp - beta * grad KL) for a real model producing the log-probs."""
    torch.manual_seed(0)
    vocab, dim = 11, 6
    policy = torch.nn.Linear(dim, vocab)
    reference = torch.nn.Linear(dim, vocab)
    feats = {"semantic": torch.randn(B, T_SEM, dim), "token": torch.randn(B, T_IMG, dim)}
    targets = {"semantic": torch.randint(0, vocab, (B, T_SEM)), "token": torch.randint(0, vocab, (B, T_IMG))}
    masks = {"semantic": torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool),
             "token": torch.ones(B, T_IMG, dtype=torch.bool)}
    adv = torch.tensor([1.3, -0.4, 0.2])
    beta = 0.01

    def logps(model):
        return {n: torch.log_softmax(model(feats[n]), -1).gather(-1, targets[n][..., None]).squeeze(-1) for n in feats}

    cur, ref = logps(policy), {n: v.detach() for n, v in logps(reference).items()}
    levels = {n: LevelTerms(cur[n], cur[n].detach(), masks[n], ref[n]) for n in cur}
    loss, stats = grpo_loss(levels, adv, LossConfig(beta=beta))
    assert stats["token/ratio_mean"] == 1.0 and stats["semantic/clip_frac"] == 0.0
    got = torch.autograd.grad(loss, list(policy.parameters()))

    # T2I-R1's expression, built independently: maximise sum(A * logp - beta * KL) / N
    n_tokens = sum(int(m.sum()) for m in masks.values())
    cur2 = logps(policy)
    objective = 0.0
    for n in cur2:
        r = ref[n] - cur2[n]
        kl = torch.exp(r) - r - 1
        objective = objective + ((adv[:, None] * cur2[n] - beta * kl) * masks[n]).sum()
    expected = torch.autograd.grad(-objective / n_tokens, list(policy.parameters()))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)


def test_active_levels_and_errors():
    assert active_levels(LossConfig()) == ("semantic", "token")
    assert active_levels(LossConfig(levels="token")) == ("token",)
    assert active_levels(LossConfig(token_weight=0.0)) == ("semantic",)
    levels, adv = _random_levels(0)
    with pytest.raises(ValueError, match="reference log-probs"):
        grpo_loss({n: LevelTerms(t.logp, t.old_logp, t.mask) for n, t in levels.items()}, adv, LossConfig(beta=0.1))
    with pytest.raises(ValueError, match="were not given"):
        grpo_loss({"token": levels["token"]}, adv, LossConfig())
