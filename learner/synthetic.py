"""Random train samples shaped like real rollouts (token ids of the right kinds and lengths), for the learner's
benchmarks and tests: the learner's cost and correctness do not depend on the tokens being meaningful."""

from __future__ import annotations

import torch

from learner.batch import TrainSample
from policy.model import Policy


def random_samples(
    policy: Policy,
    n: int,
    seed: int = 0,
    prompt_len: tuple[int, int] = (4, 12),
    cot_len: tuple[int, int] = (2, 10),
    version: int = 0,
    group: int = 1,
) -> list[TrainSample]:
    """``n`` samples with context/CoT lengths drawn uniformly from the given inclusive ranges, a full image
    (``policy.image_tokens`` codes) each, advantages ~ N(0, 1), and no behaviour log-probs. Consecutive samples
    come in groups of ``group`` that share their prompt, as the samples of a rollout group do."""
    g = torch.Generator().manual_seed(seed)
    ids = policy.ids
    text_vocab = min(256, ids.bos)  # ordinary (non-special) text tokens

    def draw(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    def tokens(k: int, vocab: int) -> list[int]:
        return torch.randint(0, vocab, (k,), generator=g).tolist()

    out = []
    for i in range(n):
        if i % group == 0:
            prompt = tokens(draw(*prompt_len), text_vocab)
        cot = tokens(draw(*cot_len), text_vocab)
        out.append(
            TrainSample(
                cot_prompt_ids=[ids.bos] + prompt,
                cot_ids=cot + [ids.eos],
                image_prompt_ids=[ids.bos] + prompt + cot + [ids.boi],
                image_ids=tokens(policy.image_tokens, policy.codebook_size),
                advantage=float(torch.randn((), generator=g)),
                policy_version=version,
            )
        )
    return out
