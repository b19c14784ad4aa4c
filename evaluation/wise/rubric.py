"""The WISE judge prompt, read from the user's WISE checkout (the repository has no licence, so this project
carries neither its rubric text nor its prompts).

Both judge scripts (``vllm_eval.py`` and ``WISE_legacy/gpt_eval.py``) build the chat in one function,
``build_evaluation_messages(prompt_data, image_base64)``, which returns a literal list of OpenAI-style messages:
``{"role": ..., "content": [{"type": "text", "text": <str or f-string>}, {"type": "image_url", ...}]}``, the
f-strings inserting fields of the prompt record (``prompt_data['Prompt']``, ``prompt_data['Explanation']``).
That function is read here with Python's ``ast`` module, never imported or executed: the literal text is kept
verbatim, each ``prompt_data[<key>]`` becomes a field filled from the record, each ``image_url`` part the image.
Anything else in it (a call, a variable, a conversion) is refused with the line number, so a changed script
fails loudly instead of giving a different prompt.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FUNCTION = "build_evaluation_messages"


class RubricFormatError(ValueError):
    """The judge script does not have the layout this reader understands."""


@dataclass(frozen=True)
class Field:
    key: str  # a key of the prompt record, e.g. "Prompt"


@dataclass(frozen=True)
class Part:
    kind: str  # "text" or "image"
    pieces: tuple[str | Field, ...] = ()


@dataclass(frozen=True)
class Rubric:
    source: str
    messages: tuple[tuple[str, tuple[Part, ...]], ...]  # (role, parts)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(
            p.key for _, parts in self.messages for part in parts for p in part.pieces if isinstance(p, Field)
        )

    def render(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chat for one prompt record, in transformers' message format (the image as ``{"type": "image"}``)."""
        missing = sorted(self.fields - set(record))
        if missing:
            raise KeyError(
                f"the WISE rubric of {self.source} needs fields {missing} of the prompt record, "
                f"which has {sorted(record)}"
            )
        return [
            {
                "role": role,
                "content": [
                    {"type": "image"}
                    if part.kind == "image"
                    else {
                        "type": "text",
                        "text": "".join(p if isinstance(p, str) else str(record[p.key]) for p in part.pieces),
                    }
                    for part in parts
                ],
            }
            for role, parts in self.messages
        ]


def read_rubric(path: Path) -> Rubric:
    """The chat template of ``build_evaluation_messages`` in the judge script at ``path``."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == FUNCTION), None)
    if func is None or not func.args.args:
        raise RubricFormatError(
            f"{path}: no function {FUNCTION}(prompt_data, ...) at module level; this reader "
            f"understands the judge scripts of WISE commit eb51174"
        )
    record_arg = func.args.args[0].arg
    returned = [n.value for n in ast.walk(func) if isinstance(n, ast.Return)]
    if len(returned) != 1 or not isinstance(returned[0], ast.List):
        raise RubricFormatError(f"{path}:{func.lineno}: {FUNCTION} must return one literal list of messages")
    reader = _Reader(path, record_arg)
    messages = tuple(reader.message(m) for m in returned[0].elts)
    rubric = Rubric(source=str(path), messages=messages)
    if not any(part.kind == "image" for _, parts in messages for part in parts):
        raise RubricFormatError(f"{path}: {FUNCTION} has no image part")
    return rubric


class _Reader:
    def __init__(self, path: Path, record_arg: str):
        self.path, self.record_arg = path, record_arg

    def fail(self, node: ast.AST, what: str) -> RubricFormatError:
        return RubricFormatError(
            f"{self.path}:{getattr(node, 'lineno', '?')}: {what} in {FUNCTION}; this reader "
            f"understands the judge scripts of WISE commit eb51174"
        )

    def literal_dict(self, node: ast.AST) -> dict[str, ast.AST]:
        if not isinstance(node, ast.Dict) or not all(isinstance(k, ast.Constant) for k in node.keys):
            raise self.fail(node, "expected a dict with literal keys")
        return {k.value: v for k, v in zip(node.keys, node.values)}

    def message(self, node: ast.AST) -> tuple[str, tuple[Part, ...]]:
        d = self.literal_dict(node)
        role, content = d.get("role"), d.get("content")
        if not isinstance(role, ast.Constant) or not isinstance(content, ast.List):
            raise self.fail(node, "expected a message {'role': '...', 'content': [...]}")
        return role.value, tuple(self.part(p) for p in content.elts)

    def part(self, node: ast.AST) -> Part:
        d = self.literal_dict(node)
        kind = d.get("type")
        if not isinstance(kind, ast.Constant):
            raise self.fail(node, "expected a content part with a literal 'type'")
        if kind.value == "image_url":
            return Part("image")
        if kind.value == "text" and "text" in d:
            return Part("text", self.text(d["text"]))
        raise self.fail(node, f"unsupported content part type {kind.value!r}")

    def text(self, node: ast.AST) -> tuple[str | Field, ...]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return (node.value,)
        if not isinstance(node, ast.JoinedStr):
            raise self.fail(node, "expected a string or f-string as the text")
        pieces: list[str | Field] = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                pieces.append(v.value)
            elif (
                isinstance(v, ast.FormattedValue)
                and v.conversion == -1
                and v.format_spec is None
                and isinstance(v.value, ast.Subscript)
                and isinstance(v.value.value, ast.Name)
                and v.value.value.id == self.record_arg
                and isinstance(v.value.slice, ast.Constant)
            ):
                pieces.append(Field(v.value.slice.value))
            else:
                raise self.fail(v, f"an f-string field other than {self.record_arg}['<key>']")
        return tuple(pieces)
