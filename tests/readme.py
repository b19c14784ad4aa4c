"""The README's shell commands, as the tests run them: every ```bash block of README.md is preceded by a marker
``<!-- readme-test: NAME -->``, and :data:`BLOCKS` says how each named block is run.

What the tests change in a documented command is listed here and nowhere else: text that must differ on a test
machine (free ports instead of the defaults, temporary paths instead of ones under the repository or the home
directory, loopback instead of 0.0.0.0) and documented ``key=value`` overrides appended to ``python -m
cluster.run`` (short runs). A README edit that removes a substituted text fails loudly rather than running
something else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKED_BLOCK = re.compile(r"<!-- readme-test: ([a-z-]+) -->\n```bash\n(.*?)```", re.S)
ANY_BLOCK = re.compile(r"```bash\n")

# Tiny and quick: 4 CoT tokens, a grid every 2 steps.
QUICK = ("rollout.cot.max_new_tokens=4", "logging.image_every=2")


@dataclass(frozen=True)
class Block:
    run_by: str  # the test that runs the block, or why it is not run
    replace: dict[str, str] = field(default_factory=dict)  # README text -> test text ({placeholders} per run)
    # per `python -m cluster.run` of the block, in order: documented overrides appended to it
    append: tuple[tuple[str, ...], ...] = ()
    skip: dict[str, str] = field(default_factory=dict)  # command -> why the tests do not run it


BLOCKS: dict[str, Block] = {
    "two-commands": Block(
        "tests/test_cluster.py::test_embedded_default_learns_and_writes_every_output",
        # -o: never reinstall the shared environment under a running suite; a fresh output_dir (the default seed 0,
        # as a user gets it); an evaluation every 20 steps (trainer.eval_every)
        replace={"make run": "make -o .venv/.installed run ARGS='output_dir={out} trainer.eval_every=20'"},
        skip={"make test": "the test suite itself"},
    ),
    "configuration": Block(
        "tests/test_readme.py::test_configuration_commands",
        replace={"outputs/long": "{out}"},
        # the transformers text engine starts faster than vLLM (the other runs use vLLM); the resumed run keeps it
        append=(("trainer.steps=1", "rollout.cot.engine=transformers", *QUICK), ("trainer.steps=2",)),
    ),
    "real-weights": Block(
        "tests/test_readme.py::test_commands_that_need_weights_stop_at_the_check_naming_them",
        replace={"outputs/janus7b": "{out}"},
        append=((),),
    ),
    "ray-cluster": Block(
        "tests/test_cluster.py::test_ray_cluster_section_with_token_auth_and_the_reward_fleet",
        # loopback, free ports, and a temporary directory of its own: nothing shared with another Ray on the machine
        replace={
            "--dashboard-host 0.0.0.0": "--dashboard-host 127.0.0.1 --node-ip-address=127.0.0.1 --port={gcs} "
            "--dashboard-port={dashboard} --num-cpus=2 "
            "--metrics-export-port={metrics} --dashboard-agent-listen-port={agent} "
            "--ray-client-server-port={client} --temp-dir={temp} "
            "--disable-usage-stats",
            "HEAD:8265": "127.0.0.1:{dashboard}",
        },
        append=(("trainer.steps=12", *QUICK),),
    ),  # long enough for the reward-fleet commands to act mid-job
    "reward-fleet": Block(
        "tests/test_cluster.py::test_ray_cluster_section_with_token_auth_and_the_reward_fleet "
        "(while the job of ray-cluster runs)"
    ),
    "generate": Block(
        "tests/test_readme.py::test_generate_and_score_commands",
        # the tiny policy's HF directory stands in for a trained run's export; output in a temporary directory
        replace={"--checkpoint outputs/run": "--checkpoint {checkpoint} --out {out}"},
    ),
    "score": Block(
        "tests/test_readme.py::test_generate_and_score_commands",
        # the two servers the test starts (free ports), its config file (the token), the images `generate` drew
        replace={
            "--server 127.0.0.1:50051 --server 127.0.0.1:50052": "--server {server1} --server {server2}",
            "--config rewards.yaml": "--config {config}",
            "outputs/generate/images/*.png": "{images}/*.png",
        },
    ),
    "evaluation": Block(
        "tests/test_readme.py::test_evaluation_commands",
        # -o: never reinstall the shared environment under a running suite; one prompt per category (the
        # documented eval.max_prompts) into a temporary directory
        replace={"make eval": "make -o .venv/.installed eval ARGS='eval.max_prompts=1 eval.output_dir={out}'"},
    ),
    "reward-server": Block(
        "tests/test_readme.py::test_commands_that_need_weights_stop_at_the_check_naming_them",
        replace={"--host 0.0.0.0": "--host 127.0.0.1"},
    ),
}


def marked_blocks(text: str | None = None) -> dict[str, str]:
    """Block name -> the block's text, for every marked block; raises if a bash block has no marker or a name is
    used twice."""
    text = README.read_text() if text is None else text
    found = MARKED_BLOCK.findall(text)
    names = [name for name, _ in found]
    if len(found) != len(ANY_BLOCK.findall(text)):
        raise AssertionError("a ```bash block of README.md has no <!-- readme-test: NAME --> marker before it")
    if len(set(names)) != len(names):
        raise AssertionError(f"a readme-test name is used twice: {names}")
    return dict(found)


def commands(block_text: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    out, current = [], ""
    for line in block_text.splitlines():
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        command = _strip_comment(current).strip()
        if command:
            out.append(" ".join(command.split()))
        current = ""
    return out


def _strip_comment(line: str) -> str:
    """The line without its comment: as in bash, a # that starts a word starts a comment (the README's commands
    quote no # )."""
    return re.sub(r"(^|\s)#.*$", "", line)


def script(name: str, **values: str) -> list[str]:
    """The commands of block ``name`` as the tests run them: substitutions made (``values`` fill the
    placeholders), overrides appended, skipped commands left out."""
    block = BLOCKS[name]
    text = marked_blocks()[name]
    for old, new in block.replace.items():
        if old not in text:
            raise AssertionError(f"README block {name!r} no longer contains {old!r}: update tests/readme.py")
        text = text.replace(old, new.format(**values))
    runs = iter(block.append)
    out = []
    for command in commands(text):
        if command in block.skip:
            continue
        if command.startswith("python -m cluster.run") or " -- python -m cluster.run" in command:
            command = " ".join((command, *next(runs)))
        out.append(command)
    if next(runs, None) is not None:
        raise AssertionError(
            f"README block {name!r} has fewer `python -m cluster.run` commands than tests/readme.py "
            f"appends overrides to"
        )
    return out
