"""WISE (PKU-YuanGroup/WISE): a Qwen3.5 judge reads the benchmark's own rubric about each image.

variants.py (WISE_Verified and legacy: files, category ranges, weights), checkout.py (prompts from the user's
WISE checkout), rubric.py (the judge prompt read from the checkout's judge script), judge.py (Qwen3.5 through
transformers), scoring.py (answer parsing, WiScore, summary), evaluator.py (both protocols as Evaluators).
"""
