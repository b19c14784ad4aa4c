"""T2I-CompBench metrics (EVAL.md section 1) as evaluators (evaluation/base.py) over transformers models loaded from
local directories.

Evaluators, one per metric:
- ``blip_vqa.BlipVqaEvaluator``: colour / shape / texture (same-weights; exact with a 480-px conversion).
- ``clipscore.ClipScoreEvaluator``: non-spatial, and the complex-mode text (exact).
- ``spatial.Spatial2DEvaluator`` / ``spatial.Spatial3DEvaluator``: 2D and 3D spatial (substitute: GroundingDINO
  for UniDet, ``detector``; DPT-Hybrid depth for 3D, ``depth``).
- ``numeracy.NumeracyEvaluator``: numeracy (substitute).
- ``complex.ComplexEvaluator``: complex, the 3-in-1 combination (substitute through its spatial part).

Their rules, pure and golden-tested: ``prompt_rules`` (what each script reads from a prompt, on spaCy tokens from
``spacy_parse``), ``detection_rules`` (2D/3D positions, numeracy, the 722-label gate), ``three_in_one``. The
original image transforms without torchvision: ``preprocess``. Local files with helpful errors: ``files``; batch
checks: ``inputs``.
"""
