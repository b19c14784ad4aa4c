"""The local files the T2I-CompBench evaluators read: model directories (HF format, never a hub id) and the
benchmark's data files (prompt sub-lists, object names, UniDet's label list), each checked before use with an
error that names the path, the files expected and where to obtain them."""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path

# One of each group must be present (glob alternatives).
WEIGHT_FILES = ("model.safetensors", "model-*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")

COMPBENCH_REPO = "https://github.com/Karine-Huang/T2I-CompBench"


class ModelDirError(FileNotFoundError):
    """An evaluator's model directory is missing or incomplete."""


class BenchmarkFileError(FileNotFoundError):
    """A benchmark data file is missing or malformed."""


@dataclass(frozen=True)
class ModelSpec:
    """What an evaluator loads: the hub checkpoint to download and the files it must contain."""

    role: str  # e.g. "T2I-CompBench BLIP-VQA"
    hub_id: str
    expected: tuple[tuple[str, ...], ...]

    def how_to_get(self) -> str:
        name = self.hub_id.split("/")[-1]
        return (f"Download {self.hub_id} on a machine with network access (`huggingface-cli download {self.hub_id} "
                f"--local-dir /models/{name}`), copy the directory here and pass its path.")


BLIP_VQA = ModelSpec("T2I-CompBench BLIP-VQA (colour/shape/texture)", "Salesforce/blip-vqa-capfilt-large",
                     (("config.json",), TOKENIZER_FILES, WEIGHT_FILES))
CLIP_B32 = ModelSpec("T2I-CompBench CLIPScore (non-spatial)", "openai/clip-vit-base-patch32",
                     (("config.json",), TOKENIZER_FILES, WEIGHT_FILES))
GDINO = ModelSpec("UniDet substitute (spatial, numeracy, 3D)", "IDEA-Research/grounding-dino-base",
                  (("config.json",), ("preprocessor_config.json", "processor_config.json"), TOKENIZER_FILES,
                   WEIGHT_FILES))
DPT_HYBRID = ModelSpec("T2I-CompBench 3D depth", "Intel/dpt-hybrid-midas", (("config.json",), WEIGHT_FILES))


def require_model_dir(path: str | os.PathLike | None, spec: ModelSpec) -> Path:
    """The checked directory of ``spec``; raises ModelDirError saying what is wrong and how to fix it."""
    wanted = "; ".join(" or ".join(alts) for alts in spec.expected)
    if not path:
        raise ModelDirError(f"{spec.role}: no model directory given; it must hold {wanted}. {spec.how_to_get()}")
    p = Path(os.path.expanduser(str(path)))
    if not p.is_dir():
        raise ModelDirError(f"{spec.role}: model directory {str(p)!r} does not exist; it must hold {wanted}. "
                            f"{spec.how_to_get()}")
    names = [f.name for f in p.iterdir()]
    missing = [" or ".join(alts) for alts in spec.expected if not any(fnmatch.filter(names, a) for a in alts)]
    if missing:
        raise ModelDirError(f"{spec.role}: model directory {str(p)!r} is incomplete, missing {'; '.join(missing)}. "
                            f"{spec.how_to_get()}")
    return p


def _read_text(path: str | os.PathLike, what: str, source: str) -> str:
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise BenchmarkFileError(f"{what}: file {str(p)!r} not found. Get it from {source}.")
    return p.read_text(encoding="utf-8")


def read_lines(path: str | os.PathLike, what: str, source: str = f"{COMPBENCH_REPO} examples/dataset/") -> list[str]:
    """Non-empty lines of a benchmark text file, without their newline (the files' last line has none)."""
    return [line for line in _read_text(path, what, source).splitlines() if line.strip()]


def load_unidet_labels(path: str | os.PathLike) -> list[str]:
    """UniDet's 722 class names (``detection_features.pt['labels']``, e.g. ``"table, desk"``) as a JSON list."""
    source = (f"the label list of {COMPBENCH_REPO} UniDet_eval/dataset/detection_features.pt "
              "(torch.load(...)['labels'] written as a JSON list of 722 strings)")
    text = _read_text(path, "UniDet label list", source)
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(f"UniDet label list {str(path)!r} is not valid JSON ({e}); expected a JSON list "
                                 f"of 722 strings, from {source}") from e
    if not isinstance(labels, list) or len(labels) != 722 or not all(isinstance(x, str) for x in labels):
        size = f" of length {len(labels)}" if isinstance(labels, list) else ""
        raise BenchmarkFileError(f"UniDet label list {str(path)!r} must be a JSON list of 722 strings; got "
                                 f"{type(labels).__name__}{size}")
    return labels


def load_new_objects(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``new_objects.txt``: ``singular - plural`` per line -> (singulars, plurals), lowercased and stripped as the
    numeracy script reads them (numeracy_eval.py:23-25)."""
    singular, plural = [], []
    for i, line in enumerate(read_lines(path, "numeracy object names (new_objects.txt)")):
        parts = line.split(" - ")
        if len(parts) < 2:
            raise BenchmarkFileError(f"{str(path)!r} line {i + 1}: expected 'singular - plural', got {line!r}")
        singular.append(parts[0].strip().lower())
        plural.append(parts[1].strip().lower())
    return singular, plural
