"""benchmarks/learning_probe.py: its tabulated per-code rewards against the embedded colour scorer's own scores of
decoded images (exact for an image of one code, the documented approximation for mixed images), and its command."""

import numpy as np
import torch

from benchmarks import learning_probe
from cluster.config import load_config
from core.prompt_file import load_prompts
from policy.model import decode_image_tokens
from rewards.scorers.color import ColorScorer, color_words


def test_tabulated_rewards_against_the_colour_scorer(tiny_policy):
    cfg = load_config(None, [])
    records = [r for r in load_prompts(None).records if len(color_words(r.prompt)) == 1]
    colours = sorted({color_words(r.prompt)[0] for r in records})
    records = [next(r for r in records if color_words(r.prompt) == [c]) for c in colours]  # one prompt per colour
    table = learning_probe.code_rewards(tiny_policy, cfg, colours)
    scorer = ColorScorer(cfg.rewards.color.radius, cfg.rewards.color.scale)
    g = torch.Generator().manual_seed(0)
    n = tiny_policy.image_tokens
    uniform = torch.randint(0, tiny_policy.codebook_size, (8, 1), generator=g).repeat(1, n)
    # images of 5 codes each, as the peaked CFG distribution draws them
    mixed = torch.stack(
        [
            torch.randint(0, tiny_policy.codebook_size, (5,), generator=g)[torch.randint(0, 5, (n,), generator=g)]
            for _ in range(64)
        ]
    )
    tabulated, real = [], []
    for codes, exact in ((uniform, True), (mixed, False)):
        images = list(decode_image_tokens(tiny_policy.model, codes))
        for k, record in enumerate(records):
            t = table[codes, k].mean(1).numpy()
            r = np.array([s.score for s in scorer.score(record, images)])
            if exact:
                np.testing.assert_allclose(t, r, atol=1e-6)
            else:
                tabulated.append(t)
                real.append(r)
    assert np.corrcoef(np.concatenate(tabulated), np.concatenate(real))[0, 1] > 0.5


def test_the_command_runs_grpo_and_reports_exact_rewards(capsys):
    (result,) = learning_probe.main(["--prompts", "2", "--group", "4", "--steps", "20", "--seeds", "3"])
    assert len(result.rewards) == 20 and all(0.0 < r < 1.0 for r in result.rewards)
    assert f"ratio {result.ratio:.2f}" in capsys.readouterr().out
