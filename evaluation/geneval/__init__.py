"""GenEval (djghosh13/geneval): Mask2Former detections, CLIP colour classification and the official rules.

prompts.py (metadata, class names), detector_input.py + instances.py + detector.py (the detector with mmdet's
pre/post-processing), colors.py (CLIP ViT-L/14 colours), rules.py (object selection, ``evaluate``,
``relative_position``, summary), evaluator.py (all of it as one Evaluator).
"""
