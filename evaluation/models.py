"""Every evaluator model the harness can load: the hub checkpoint a user downloads (on a machine with network
access, then copies here) and the files its local directory must hold. Nothing is ever fetched at run time."""

from __future__ import annotations

from evaluation.local_files import CONFIG_FILES, TOKENIZER_FILES, WEIGHT_FILES, ModelSpec

BLIP_VQA = ModelSpec(
    "T2I-CompBench BLIP-VQA (colour/shape/texture)",
    "Salesforce/blip-vqa-capfilt-large",
    (CONFIG_FILES, TOKENIZER_FILES, WEIGHT_FILES),
)
CLIP_B32 = ModelSpec(
    "T2I-CompBench CLIPScore (non-spatial)",
    "openai/clip-vit-base-patch32",
    (CONFIG_FILES, TOKENIZER_FILES, WEIGHT_FILES),
)
GDINO = ModelSpec(
    "UniDet substitute (spatial, numeracy, 3D)",
    "IDEA-Research/grounding-dino-base",
    (CONFIG_FILES, ("preprocessor_config.json", "processor_config.json"), TOKENIZER_FILES, WEIGHT_FILES),
)
DPT_HYBRID = ModelSpec("T2I-CompBench 3D depth", "Intel/dpt-hybrid-midas", (CONFIG_FILES, WEIGHT_FILES))
MASK2FORMER = ModelSpec(
    "GenEval detector (Mask2Former Swin-S COCO instance)",
    "facebook/mask2former-swin-small-coco-instance",
    (CONFIG_FILES, WEIGHT_FILES),
)
CLIP_L14 = ModelSpec(
    "GenEval colour classifier (CLIP ViT-L/14)",
    "openai/clip-vit-large-patch14",
    (CONFIG_FILES, WEIGHT_FILES, TOKENIZER_FILES),
)
QWEN_JUDGE = ModelSpec(
    "WISE_Verified judge (about 70 GB in bf16)",
    "Qwen/Qwen3.5-35B-A3B",
    (CONFIG_FILES, WEIGHT_FILES, TOKENIZER_FILES, ("preprocessor_config.json",)),
)
