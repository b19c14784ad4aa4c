"""Benchmark evaluation: T2I-CompBench, GenEval and WISE, generated with our rollout path and scored by the
official metrics reimplemented on transformers models loaded from local directories (see evaluation/base.py).

The harness (``python -m evaluation.run``, ``trainer.eval_every``):

- ``config``: the ``eval.*`` section; ``catalog``: benchmarks, categories, selections with "did you mean";
- ``plan``: every image to draw, its file in the benchmark's official layout and its seed;
- ``policies``: the policies compared, resolved to HF directories, with a fingerprint of their weights;
- ``generate`` (stage 1): resumable drawing on rollout actors, ``manifest.jsonl``; ``records_log``: kill-safe
  JSON lines;
- ``models``, ``local_files``: the evaluator models a user downloads and the check of their directories;
  ``passes``: every evaluator by name, its checks and its builder; ``proxies``: the embedded rewards as stand-ins;
- ``metrics``: per-category metrics (the complex 3-in-1 included) and benchmark aggregates; ``score`` (stage 2):
  evaluator actors, per-image results;
- ``report`` (stage 3), ``figures``, ``published``: the report beside the published rows;
- ``harness``: the stages in order; ``run``: the command; ``training``: the hook of ``trainer.eval_every``;
  ``ray_session``: start or join Ray.

The metrics themselves: ``compbench/``, ``geneval/``, ``wise/``.
"""
