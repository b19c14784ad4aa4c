"""HPS v2.1 (human preference score): OpenCLIP ViT-H-14 fine-tuned on human preferences, run as a transformers
``CLIPModel``. Score = cosine of the normalised image and text features, no logit scale (as T2I-R1; typical
values 0.2 to 0.35).

The directory ``rewards.hps.path`` holds the HF-format files of the base model
(laion/CLIP-ViT-H-14-laion2B-s32B-b79K: config.json, tokenizer files, preprocessor_config.json) and the HPS
weights, either already converted (``model.safetensors``, see ``python -m rewards.hps_convert``) or as the
original open_clip checkpoint ``HPS_v2.1_compressed.pt`` (converted in memory at every load).
"""

from __future__ import annotations

from transformers import CLIPConfig, CLIPModel

from rewards.config import ScorerConfig
from rewards.hps_convert import load_openclip_checkpoint
from rewards.scorers.clip import CLIPScorer
from rewards.scorers.common import PROCESSOR_FILES, TOKENIZER_FILES, WEIGHT_FILES, scorer_device

HPS_CHECKPOINT = "HPS_v2.1_compressed.pt"
HPS_FILES = (("config.json",), PROCESSOR_FILES, TOKENIZER_FILES, WEIGHT_FILES + (HPS_CHECKPOINT,))
HPS_HOW_TO_GET = (
    "On a machine with network access: `huggingface-cli download laion/CLIP-ViT-H-14-laion2B-s32B-b79K "
    "config.json preprocessor_config.json tokenizer.json tokenizer_config.json vocab.json merges.txt "
    "special_tokens_map.json --local-dir /models/hps-v2.1` and `huggingface-cli download xswu/HPSv2 "
    f"{HPS_CHECKPOINT} --local-dir /models/hps-v2.1`; copy the directory here and set rewards.hps.path to it."
)


class HPSScorer(CLIPScorer):
    name = "hps"
    version = "2.1"
    files = HPS_FILES
    how_to_get = HPS_HOW_TO_GET

    @classmethod
    def from_config(cls, cfg: ScorerConfig) -> HPSScorer:
        path = cls.model_path(cfg)
        if not any(any(path.glob(pattern)) for pattern in WEIGHT_FILES):  # only the open_clip checkpoint
            model = CLIPModel(CLIPConfig.from_pretrained(path, local_files_only=True))
            model.load_state_dict(load_openclip_checkpoint(path / HPS_CHECKPOINT), strict=True)
        else:
            model = CLIPModel.from_pretrained(path, local_files_only=True)
        return cls.load(path, cfg.batch_size, scorer_device(cfg), model=model)
