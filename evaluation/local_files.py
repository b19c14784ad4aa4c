"""Checking a user-given local directory (evaluator weights, benchmark files) before anything is loaded from it.

Every evaluator model and benchmark file comes from a directory the user names; nothing is fetched. When a
directory is missing or incomplete, the error names the path, the files expected in it and where to obtain
them, so that the user can fix it on a machine with network access.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class MissingFilesError(FileNotFoundError):
    """A local directory is missing or lacks files; the message says which, and how to obtain them."""


# File requirements of a transformers checkpoint directory (alternatives: one of them must be present).
CONFIG_FILES = ("config.json",)
WEIGHT_FILES = ("model.safetensors", "model-*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model")


def require_files(
    path: str | os.PathLike | None, what: str, expected: Sequence[Sequence[str]], how_to_get: str
) -> Path:
    """Resolve ``path`` and check that it is a directory holding every requirement of ``expected``.

    Each requirement is a tuple of glob patterns relative to the directory (e.g. ``("model.safetensors",
    "model-*.safetensors")`` or ``("data_verified/natural_science_verified.json",)``), one of which must match.
    ``what`` names the directory in the message (e.g. "the GenEval detector directory").
    """
    wanted = "; ".join(" or ".join(alts) for alts in expected)
    if path is None or str(path) == "":
        raise MissingFilesError(f"{what} is not set; it must be a local directory holding {wanted}. {how_to_get}")
    root = Path(os.path.expanduser(str(path)))
    if not root.is_dir():
        raise MissingFilesError(
            f"{what} {str(root)!r} does not exist or is not a directory; it must hold {wanted}. {how_to_get}"
        )
    missing = [
        " or ".join(alts)
        for alts in expected
        if not any(match.is_file() for pattern in alts for match in root.glob(pattern))
    ]
    if missing:
        raise MissingFilesError(f"{what} {str(root)!r} is incomplete: missing {'; '.join(missing)}. {how_to_get}")
    return root


def hub_download_hint(hub_id: str, role: str) -> str:
    """How to obtain a transformers checkpoint: download it from the hub on a machine with network access."""
    name = hub_id.split("/")[-1]
    return (
        f"Download the {role} ({hub_id}) on a machine with network access, e.g. `huggingface-cli download "
        f"{hub_id} --local-dir /models/{name}`, and copy that directory here."
    )


@dataclass(frozen=True)
class ModelSpec:
    """An evaluator model: its role in messages, the hub checkpoint a user downloads, the files it must hold."""

    role: str  # e.g. "T2I-CompBench BLIP-VQA (colour/shape/texture)"
    hub_id: str
    expected: tuple[tuple[str, ...], ...]

    def how_to_get(self) -> str:
        return hub_download_hint(self.hub_id, self.role)

    def require(self, path: str | os.PathLike | None) -> Path:
        """The checked directory; raises MissingFilesError naming the path, the files expected and the download."""
        return require_files(path, f"the {self.role} model directory", self.expected, self.how_to_get())
