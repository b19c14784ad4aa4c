"""Benchmark evaluation: T2I-CompBench, GenEval and WISE, generated with our rollout path and scored by the
official metrics reimplemented on transformers models loaded from local directories (see evaluation/base.py)."""
