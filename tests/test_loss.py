"""The BiCoT-GRPO loss against a hand-written reference (explicit loops over samples and tokens, gradients
derived by hand), a finite-difference check, T2I-R1's one-update special case, the truncated importance weights by hand,
and the off-policy correction recovering the on-policy gradient."""

import math

import pytest
import torch

from learner.config import LossConfig
from learner.loss import LevelTerms, active_levels, grpo_loss, truncated_is_weight

B, T_SEM, T_IMG = 3, 5, 7


def _random_levels(seed: int, dtype=torch.float64, behaviour: bool = False):
    """``behaviour``: rollout log-probs off the proximal ones by up to +-1 (so that some importance weights pass
    the cap of 2, exp(0.69)), none on the last sample (a NaN row)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in (("semantic", T_SEM), ("token", T_IMG)):
        logp = -torch.rand(B, t, generator=g, dtype=dtype) * 3
        # proximal log-probs off by up to +-0.6 so that ratios leave [0.8, 1.2] and clipping engages
        old = logp + (torch.rand(B, t, generator=g, dtype=dtype) - 0.5) * 1.2
        ref = logp + (torch.rand(B, t, generator=g, dtype=dtype) - 0.5)
        lengths = torch.randint(1, t + 1, (B,), generator=g)
        mask = torch.arange(t)[None, :] < lengths[:, None]
        rollout = None
        if behaviour:
            rollout = old + (torch.rand(B, t, generator=g, dtype=dtype) - 0.5) * 2.0
            rollout[-1] = float("nan")
        out[name] = LevelTerms(
            logp=logp.clone().requires_grad_(True), old_logp=old, mask=mask, ref_logp=ref, behaviour_logp=rollout
        )
    adv = torch.randn(B, generator=g, dtype=dtype)
    return out, adv


def _hand_is_weight(old: float, behaviour: float, cfg: LossConfig) -> float:
    if not cfg.is_correction or math.isnan(behaviour):
        return 1.0
    return min(math.exp(old - behaviour), cfg.is_cap)


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
                behaviour = float("nan") if t.behaviour_logp is None else float(t.behaviour_logp[b, j])
                w = _hand_is_weight(old, behaviour, cfg)
                ratio = math.exp(lp - old)
                clipped_ratio = min(max(ratio, 1 - cfg.clip_low), 1 + cfg.clip_high)
                if -a * ratio >= -a * clipped_ratio:
                    pg, dpg = -w * a * ratio, -w * a * ratio
                else:  # the clipped branch wins, which only happens when the clamp is saturated: no gradient
                    pg, dpg = -w * a * clipped_ratio, 0.0
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
    LossConfig(is_cap=1.3, beta=0.1),
    LossConfig(is_correction=False),
]


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.aggregation}-{c.levels}-b{c.beta}-w{c.semantic_weight},{c.token_weight}"
)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("behaviour", [False, True], ids=["no-behaviour", "behaviour"])
def test_loss_and_gradient_match_hand_written_reference(cfg, seed, behaviour):
    levels, adv = _random_levels(seed, behaviour=behaviour)
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
            "semantic": LevelTerms(
                sem, levels["semantic"].old_logp, levels["semantic"].mask, levels["semantic"].ref_logp
            ),
            "token": LevelTerms(tok, levels["token"].old_logp, levels["token"].mask, levels["token"].ref_logp),
        }
        return grpo_loss(lv, adv, cfg)[0]

    inputs = (
        levels["semantic"].logp.detach().clone().requires_grad_(True),
        levels["token"].logp.detach().clone().requires_grad_(True),
    )
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
    masks = {
        "semantic": torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool),
        "token": torch.ones(B, T_IMG, dtype=torch.bool),
    }
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


def test_importance_weights_and_their_statistics_by_hand():
    """Two samples, one with rollout log-probs (one weight truncated at the cap of 2), one without (weight 1):
    the loss, its gradient and the statistics worked out by hand. Proximal = current (ratio 1), beta = 0."""
    old = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -1.0, 0.0]], dtype=torch.float64)
    behaviour = torch.tensor([[-2.0, -1.0, -0.5], [float("nan")] * 3], dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    logp = old.clone().requires_grad_(True)
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    cfg = LossConfig(levels="semantic", beta=0.0)
    loss, stats = grpo_loss({"semantic": LevelTerms(logp, old, mask, None, behaviour)}, adv, cfg)
    loss.backward()
    w = [[2.0, math.exp(-1.0), 1.0], [1.0, 1.0, 0.0]]  # min(e^1, 2), e^-1, e^0; no behaviour: 1
    # per token -w * A, over 5 tokens
    assert float(loss.detach()) == pytest.approx((-(2.0 + math.exp(-1.0) + 1.0) * 1.0 + 2 * 2.0) / 5, rel=1e-12)
    want = torch.tensor([[-w[0][0], -w[0][1], -w[0][2]], [2 * w[1][0], 2 * w[1][1], 0.0]], dtype=torch.float64) / 5
    torch.testing.assert_close(logp.grad, want, rtol=1e-12, atol=0)
    assert stats["semantic/is_weight_mean"] == pytest.approx((2.0 + math.exp(-1.0) + 3.0) / 5)
    assert stats["semantic/is_truncated_frac"] == pytest.approx(1 / 5)
    assert stats["semantic/logp_gap_mean"] == pytest.approx(2 / 3) and stats["semantic/logp_gap_max"] == 1.0
    assert stats["semantic/no_behaviour_frac"] == 0.5
    assert stats["semantic/ratio_mean"] == 1.0 and stats["semantic/clip_frac"] == 0.0


def test_truncated_is_weight_formula():
    g = torch.Generator().manual_seed(4)
    old = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 4
    behaviour = old + (torch.rand(4, 6, generator=g, dtype=torch.float64) - 0.5) * 3
    behaviour[2] = float("nan")
    got = truncated_is_weight(old, behaviour, 1.5)
    for b in range(4):
        for t in range(6):
            o, r = float(old[b, t]), float(behaviour[b, t])
            assert float(got[b, t]) == pytest.approx(1.0 if b == 2 else min(math.exp(o - r), 1.5), rel=1e-12)
    assert not got.requires_grad and torch.equal(truncated_is_weight(old, None, 1.5), torch.ones_like(old))


def test_importance_weights_turn_off_policy_tokens_into_the_on_policy_gradient():
    """A categorical policy pi = softmax(theta) over 4 codes; a batch drawn from another (behaviour) policy mu,
    with each code appearing in exact proportion to mu (10 tokens: 4, 2, 2, 2), so the batch mean is the
    expectation under mu. The proximal policy pi_old is neither: the learner after some updates on this batch is
    at theta, a little away from theta_old. Decoupled PPO's weights, pi_old / mu (below the cap here) times the
    ratio pi / pi_old (inside the clip range here), make the loss gradient the exact on-policy policy gradient at
    theta: -grad sum_x pi(x) A(x), computed from the definition. Without the weights it is mu's, not pi's."""
    theta = torch.tensor([0.3, -0.2, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    theta_old = theta.detach() + torch.tensor([0.05, -0.04, 0.02, 0.0], dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 0.25, -1.0], dtype=torch.float64)  # per code
    mu = torch.tensor([0.4, 0.2, 0.2, 0.2], dtype=torch.float64)
    codes = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 3, 3])
    pi_old = torch.softmax(theta_old, -1)
    assert float((pi_old / mu).max()) < 2.0  # no weight truncated

    def loss_grad(cfg: LossConfig) -> torch.Tensor:
        logp = torch.log_softmax(theta, -1)[codes][:, None]  # one token per sample
        terms = LevelTerms(
            logp,
            torch.log(pi_old)[codes][:, None],
            torch.ones(10, 1, dtype=torch.bool),
            None,
            torch.log(mu)[codes][:, None],
        )
        loss, stats = grpo_loss({"token": terms}, adv[codes], cfg)
        assert stats["token/clip_frac"] == 0.0
        return torch.autograd.grad(loss, theta)[0]

    on_policy = torch.autograd.grad(-(torch.softmax(theta, -1) * adv).sum(), theta)[0]
    cfg = LossConfig(levels="token", beta=0.0)
    torch.testing.assert_close(loss_grad(cfg), on_policy, rtol=1e-12, atol=1e-15)
    uncorrected = loss_grad(LossConfig(levels="token", beta=0.0, is_correction=False))
    assert float((uncorrected - on_policy).abs().max()) > 0.01  # what the weights corrected

    # with a cap of 1.1 the weight of code 2 (pi_old / mu = 1.72) is truncated: the gradient is then
    # -sum_x mu(x) min(pi_old(x) / mu(x), C) (pi(x) / pi_old(x)) A(x) grad log pi(x)
    capped = loss_grad(LossConfig(levels="token", beta=0.0, is_cap=1.1))
    pi = torch.softmax(theta, -1).detach()
    w = torch.clamp(pi_old / mu, max=1.1)
    jac = torch.diag(pi) - pi[:, None] * pi[None, :]  # d pi / d theta; grad of log pi(x) is jac[x] / pi(x)
    by_hand = -sum(mu[x] * w[x] * (pi[x] / pi_old[x]) * adv[x] * jac[x] / pi[x] for x in range(4))
    torch.testing.assert_close(capped, by_hand, rtol=1e-12, atol=1e-15)
