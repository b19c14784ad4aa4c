"""T2I-CompBench metrics (EVAL.md section 1) as evaluators over transformers models loaded from local directories.

- ``prompt_rules``: the text side of every metric (BLIP questions, spatial objects and localities, numeracy parse,
  the complex CLIP text), pure functions of spaCy tokens; ``spacy_parse`` turns a prompt into those tokens.
- ``detection_rules``: the detection side (2D ``determine_position`` and score, the 3D depth rule, numeracy
  de-duplication and score, the 722-label gate), pure functions of boxes in the 479-px frame.
- ``three_in_one``: the complex category's combination of the three metrics by sub-list.
- ``preprocess``: the original image transforms (BLIP, CLIP, UniDet frame, DPT) without torchvision.
- ``files``: the local model directories and benchmark files the evaluators read, checked with helpful errors.
- Evaluators: ``blip_vqa`` (colour/shape/texture), ``clipscore`` (non-spatial), ``detector`` + ``spatial``
  (2D and 3D spatial), ``depth`` (DPT for 3D), ``numeracy``, ``complex`` (3-in-1).
"""
