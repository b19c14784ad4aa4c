"""The exact-evaluation probe of LEARNING.md: can the tiny policy learn the colour task, and how many images per
step does GRPO's estimate need for it? ``python -m benchmarks.learning_probe [--prompts P] [--group G]
[--estimator grpo] [--seeds 0 1 2] [--cot-tokens N] [-- key=value ...]``

Not the training loop: the tiny Janus of the config and AdamW with the config's learner settings (lr, betas, grad
clip, the trainable prefixes), fed with the built-in prompts that name exactly one colour, 16 per step. Every
image code's colour reward is tabulated once (the code decoded as a whole image, scored by the embedded colour
scorer's ``color_coverage``), and an image's reward is the mean over its tokens of their codes' entries. That is
an approximation of the colour reward of the decoded image: the tiny decoder gives each token its own patch, but
scales a patch's features by their RMS over the whole image (policy.model.make_decoder_colour_transparent), so
a patch's colour also depends on the other tokens (correlation 0.62 between the tabulated and the real reward
over random images of 5 codes each). Each image prompt carries a CoT of ``--cot-tokens`` tokens (default: the
config's ``rollout.cot.max_new_tokens``) drawn uniformly from the tokenizer's ordinary tokens: the tiny random
model's next-token distribution is uniform to within 0.03 nats, so its CoT is such noise. The image context is
random codes (teacher forcing), so each position's cond, uncond and CFG-guided distributions come from one
forward, and the expected reward of the guided distribution (what the rollout samples) over the 16 prompts is
computed exactly each step: no prompt-mix noise and no sampling noise in the measurement. The learning rate
follows the learner's schedule (``learner.optim``). Ratio = mean of the last 10
steps over the first 10.

Estimators (``--estimator``):

* ``grpo``: GRPO's estimate as the learner forms it on-policy: the first ``--prompts`` prompts of the step, a
  group of ``--group`` images each drawn from the guided distribution, advantages by learner/advantages.py
  (``learner.advantage``), loss ``-A log p_cond(code)`` averaged over tokens (no KL term);
* ``exact-cond``: the exact gradient of the conditional distribution's expected reward;
* ``exact-guided``: the exact gradient of the guided distribution's expected reward through the conditional
  row only (the unconditional row detached), which is what ``grpo`` estimates.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch

from cluster.config import Config, load_config
from core.prompt_file import load_prompts
from learner.advantages import group_advantages
from learner.batch import pack_level
from learner.config import lr_schedule
from learner.logprobs import unconditional_context
from policy.model import Policy, decode_image_tokens, load_policy, set_trainable
from policy.sampling import cfg_combine
from rewards.scorers.color import color_coverage, color_words
from rollout.prompts import PromptBuilder

EVAL_PROMPTS = 16
ESTIMATORS = ("grpo", "exact-cond", "exact-guided")


@dataclass
class ProbeResult:
    seed: int
    rewards: list[float]  # exact expected reward of the guided distribution before each step

    @property
    def ratio(self) -> float:
        return float(np.mean(self.rewards[-10:]) / np.mean(self.rewards[:10]))


def code_rewards(policy: Policy, cfg: Config, colours: list[str]) -> torch.Tensor:
    """[codes, colours]: the colour coverage of each code decoded as a whole image."""
    codes = torch.arange(policy.codebook_size)[:, None].repeat(1, policy.image_tokens)
    images = decode_image_tokens(policy.model, codes, 64)
    c = cfg.rewards.color
    return torch.tensor(
        np.array([color_coverage(im, colours, c.radius, c.scale) for im in images]), dtype=torch.float32
    )


def run_seed(
    cfg: Config, seed: int, estimator: str, prompts: int, group: int, steps: int, cot_tokens: int
) -> ProbeResult:
    torch.manual_seed(seed)
    policy = load_policy(cfg.model)
    model = policy.model
    records = [r for r in load_prompts(None).records if len(color_words(r.prompt)) == 1]
    colours = sorted({color_words(r.prompt)[0] for r in records})
    table = code_rewards(policy, cfg, colours)  # [V, C]
    params = [p for n, p in model.named_parameters() if n in set_trainable(model, cfg.model.trainable)]
    o = cfg.learner.optim
    opt = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    schedule = lr_schedule(opt, o, steps)
    builder = PromptBuilder(policy.tokenizer, policy.ids, cfg.rollout.prompt)
    w = cfg.rollout.image.cfg_weight
    rng = np.random.default_rng(seed)
    rewards = []
    model.train()
    ordinary = [i for i in range(len(policy.tokenizer)) if i not in policy.tokenizer.all_special_ids]
    for _ in range(steps):
        batch = [records[i] for i in rng.choice(len(records), EVAL_PROMPTS)]
        cots = [builder.cot_text(rng.choice(ordinary, cot_tokens).tolist()) for _ in batch]
        colour = torch.tensor([colours.index(color_words(r.prompt)[0]) for r in batch])
        context = torch.randint(0, policy.codebook_size, (EVAL_PROMPTS, policy.image_tokens)).tolist()
        level = pack_level(
            [builder.image_prompt_ids(r.prompt, c) for r, c in zip(batch, cots)], context, policy.ids.pad, 0
        )
        ids = torch.cat([level.context_ids, unconditional_context(level, policy.ids)])
        mask = torch.cat([level.context_mask, torch.ones_like(level.targets[:, :-1])], 1).repeat(2, 1)
        embeds = torch.cat(
            [
                model.get_input_embeddings()(ids),
                model.prepare_embeddings_for_image_generation(level.targets[:, :-1]).repeat(2, 1, 1),
            ],
            1,
        )
        hidden = model.model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)
        ).last_hidden_state
        logits = model.model.generation_head(hidden[:, level.context_ids.shape[1] - 1 :]).float()
        cond, uncond = logits[:EVAL_PROMPTS], logits[EVAL_PROMPTS:]
        per_code = table.T[colour][:, None, :]  # [P, 1, V]: each code's reward for each prompt's colour
        guided = torch.softmax(cfg_combine(cond, uncond.detach(), w), -1)  # [P, T, V]
        rewards.append(float((guided.detach() * per_code).sum(-1).mean()))
        if estimator == "exact-cond":
            loss = -(torch.softmax(cond, -1) * per_code).sum(-1).mean()
        elif estimator == "exact-guided":
            loss = -(guided * per_code).sum(-1).mean()
        else:
            probs = guided.detach()[:prompts, None].expand(prompts, group, *guided.shape[1:])
            codes = torch.distributions.Categorical(probs=probs).sample()  # [P, G, T]
            image_reward = per_code[:prompts, None, 0].expand(-1, group, -1).gather(-1, codes).mean(-1)  # [P, G]
            adv = torch.tensor(
                np.stack([group_advantages(r.tolist(), cfg.learner.advantage) for r in image_reward]),
                dtype=torch.float32,
            )
            logp = torch.log_softmax(cond[:prompts], -1)[:, None].expand(-1, group, -1, -1)
            loss = -(adv[..., None] * logp.gather(-1, codes[..., None])[..., 0]).mean()
        opt.zero_grad()
        loss.backward()
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        opt.step()
        schedule.step()
    return ProbeResult(seed, rewards)


def main(argv: list[str] | None = None) -> list[ProbeResult]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.learning_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--estimator", choices=ESTIMATORS, default="grpo")
    p.add_argument("--prompts", type=int, help="prompts per step that GRPO samples (<= 16; default: the config's)")
    p.add_argument("--group", type=int, help="images per prompt, GRPO's group (default: rollout.group_size)")
    p.add_argument("--steps", type=int, default=41)
    p.add_argument(
        "--cot-tokens", type=int, help="CoT tokens in each image prompt (default: rollout.cot.max_new_tokens)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("overrides", nargs="*", help="config key=value overrides (after --)")
    a = p.parse_args(argv)
    cfg = load_config(None, a.overrides)
    prompts = min(EVAL_PROMPTS, cfg.trainer.prompts_per_step) if a.prompts is None else a.prompts
    group = cfg.rollout.group_size if a.group is None else a.group
    cot_tokens = cfg.rollout.cot.max_new_tokens if a.cot_tokens is None else a.cot_tokens
    if not 1 <= prompts <= EVAL_PROMPTS or group < 2 or a.steps < 20 or cot_tokens < 0:
        p.error(f"--prompts must be 1..{EVAL_PROMPTS}, --group >= 2, --steps >= 20 and --cot-tokens >= 0")
    results = []
    for seed in a.seeds:
        r = run_seed(cfg, seed, a.estimator, prompts, group, a.steps, cot_tokens)
        print(
            f"seed {seed}: first 10 steps {np.mean(r.rewards[:10]):.3f}  last 10 {np.mean(r.rewards[-10:]):.3f}  "
            f"ratio {r.ratio:.2f}",
            flush=True,
        )
        results.append(r)
    return results


if __name__ == "__main__":
    main()
