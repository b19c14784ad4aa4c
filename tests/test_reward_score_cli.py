"""`python -m rewards.score` against real reward servers started here on 127.0.0.1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from core.records import PromptRecord
from rewards.base import ImageScore, Scorer
from rewards.config import RewardsConfig
from rewards.score import main
from rewards.scorers.color import ColorScorer
from rewards.server import RewardServer, ServerThread

TOKEN = "s3cret"


class MeanBrightness(Scorer):
    """A second scorer with a hand-computable score: the mean channel value / 255."""

    name = "brightness"

    def score(self, prompt: PromptRecord, images: list[np.ndarray]) -> list[ImageScore]:
        return [ImageScore(float(im.mean()) / 255, {"pixels": int(im.shape[0] * im.shape[1])}) for im in images]


@pytest.fixture(scope="module")
def servers():
    cfg = RewardsConfig(token=TOKEN)
    threads = [ServerThread(RewardServer(ColorScorer(), cfg)), ServerThread(RewardServer(MeanBrightness(), cfg))]
    addresses = [t.start() for t in threads]
    yield addresses
    for t in threads:
        t.stop(0.5)


@pytest.fixture
def images(tmp_path):
    out = []
    for name, rgb in (("red", (255, 0, 0)), ("blue", (0, 50, 255))):
        path = tmp_path / f"{name}.png"
        Image.fromarray(np.full((8, 8, 3), rgb, np.uint8)).save(path)
        out.append(str(path))
    return out


@pytest.fixture
def token_config(tmp_path):
    path = tmp_path / "rewards.yaml"
    path.write_text(f"rewards:\n  token: {TOKEN}\n  deadline_s: 30\n")
    return str(path)


def test_scores_every_image_with_every_server(servers, images, token_config, capsys):
    assert (
        main(
            [
                "--server",
                servers[0],
                "--server",
                servers[1],
                "--prompt",
                "a red car",
                "--task-type",
                "color",
                "--nouns",
                "car",
                "--config",
                token_config,
                "--json",
                *images,
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in rows] == images
    # pure red is the red prototype: fully red, score 1; brightness by hand: (255 + 0 + 0) / 3 / 255
    assert rows[0]["scores"]["color"] == pytest.approx(1.0)
    assert rows[0]["scores"]["brightness"] == pytest.approx(1 / 3)
    assert rows[1]["scores"]["brightness"] == pytest.approx((0 + 50 + 255) / 3 / 255)
    # the colour rule's own value for blue, computed in this process without the wire
    blue = np.full((8, 8, 3), (0, 50, 255), np.uint8)
    local = ColorScorer().score(PromptRecord("a red car", "color", ["car"]), [blue])
    assert rows[1]["scores"]["color"] == pytest.approx(local[0].score)
    assert rows[1]["details"]["color"] == local[0].details  # JSON values, unchanged by the wire
    assert rows[0]["details"]["brightness"] == {"pixels": 64.0}


def test_plain_output_and_metadata_json(servers, images, token_config, capsys):
    meta = json.dumps(
        {
            "task_type": "spatial",
            "nouns": ["car", "tree"],
            "spatial_info": {"obj1": "car", "obj2": "tree", "locality": "left of"},
        }
    )
    assert (
        main(
            [
                "--server",
                servers[1],
                "--prompt",
                "a car left of a tree",
                "--metadata",
                meta,
                "--config",
                token_config,
                "rewards.deadline_s=10",
                images[0],
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{images[0]}  brightness 0.3333" and out[1].strip() == 'brightness: {"pixels": 64.0}'


def test_clear_errors(servers, images, token_config, tmp_path, capsys):
    def error(*argv) -> str:
        assert main(list(argv)) == 2
        return capsys.readouterr().err

    base = ["--prompt", "a red car", "--nouns", "car"]
    assert "requires its token" in error("--server", servers[0], *base, images[0])
    assert "no reward server answers at 127.0.0.1:9" in error(
        "--server", "127.0.0.1:9", *base, "--config", token_config, images[0]
    )
    assert "cannot read image" in error(
        "--server", servers[0], *base, "--config", token_config, str(tmp_path / "none.png")
    )
    assert "give --nouns" in error("--server", servers[0], "--prompt", "a red car", images[0])
    assert "is not one of object, color" in error("--server", servers[0], *base, "--task-type", "colour", images[0])
    assert "spatial_info" in error("--server", servers[0], *base, "--metadata", '{"spatial_info": 3}', images[0])
