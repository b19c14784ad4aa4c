"""The reward service's messages: stubs up to date with the .proto, and the conversions of rewards/wire.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.images import encode_png
from core.records import PromptRecord
from protos import build, reward_pb2, reward_pb2_grpc
from rewards import wire
from rewards.base import TASK_TYPES, ImageScore


def test_checked_in_and_imported_stubs_match_the_proto(tmp_path):
    fresh = build.generate(tmp_path)
    assert {p.name for p in fresh} == {"reward_pb2.py", "reward_pb2.pyi", "reward_pb2_grpc.py"}
    for f in fresh:
        checked_in = build.PROTO_DIR / f.name
        assert checked_in.is_file(), f"{checked_in} missing: run `make protos` and commit the stubs"
        assert checked_in.read_bytes() == f.read_bytes(), f"{checked_in} is stale: run `make protos` and commit"
    # The modules actually imported (an installed copy may live elsewhere) are the fresh ones too.
    for module in (reward_pb2, reward_pb2_grpc):
        assert Path(module.__file__).read_bytes() == (tmp_path / "protos" / Path(module.__file__).name).read_bytes()


def test_stubs_import_as_a_package():
    text = (build.PROTO_DIR / "reward_pb2_grpc.py").read_text()
    assert "from protos import reward_pb2" in text
    assert reward_pb2.DESCRIPTOR.name == "protos/reward.proto"


def test_training_file_records_survive_the_wire_unchanged(shared_data):
    by_type: dict[str, dict] = {}
    for line in (shared_data / "t2i_r1_train.jsonl").read_text().splitlines():
        row = json.loads(line)
        by_type.setdefault(row["task_type"], row)
    assert set(by_type) == set(TASK_TYPES)  # every task type of the file is accepted, and only those
    image = np.zeros((4, 4, 3), np.uint8)
    for i, row in enumerate(by_type.values()):
        rec = PromptRecord(**row, index=i)
        msg = wire.request_to_proto("r", rec, [image])
        back = wire.record_from_proto(reward_pb2.ScoreRequest.FromString(msg.SerializeToString()))
        assert back == rec, row["task_type"]
        assert back.metadata() == {k: v for k, v in row.items() if k != "prompt"}, row["task_type"]


def test_absent_and_empty_attr_nouns_differ():
    rec = PromptRecord("a cat", "object", ["cat"], attr_nouns=[])
    assert wire.record_from_proto(wire.request_to_proto("r", rec, [])).attr_nouns == []
    rec.attr_nouns = None
    assert wire.record_from_proto(wire.request_to_proto("r", rec, [])).attr_nouns is None


@pytest.mark.parametrize("transport", ["raw", "png"])
def test_images_round_trip_exactly(transport):
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(2)]
    imgs.append(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8).transpose(1, 0, 2))  # not C-contiguous
    msg = wire.request_to_proto("r", PromptRecord("a cat", "object", ["cat"]), imgs, transport)
    assert msg.num_images == wire.image_count(msg) == 3
    assert (len(msg.raw_images), len(msg.images)) == ((3, 0) if transport == "raw" else (0, 3))
    parsed = reward_pb2.ScoreRequest.FromString(msg.SerializeToString())
    back = [wire.image_from_proto(parsed, i) for i in range(wire.checked_image_count(parsed))]  # the server's way
    for a, b in zip(imgs, back):
        assert b.dtype == np.uint8
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("transport", ["raw", "png"])
def test_request_bytes_parse_as_the_request(shared_data, transport):
    """What the client sends (written field by field from the arrays) is the message request_to_proto builds, as
    protobuf's own parser reads it: every task type's metadata, and images whose lengths need 1- to 3-byte
    varints (3, 129 and 442368 bytes of pixels), one of them not C-contiguous."""
    rng = np.random.default_rng(1)
    shapes = [(1, 1), (1, 43), (5, 7), (384, 384)]
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    imgs.append(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8).transpose(1, 0, 2))
    rows = [json.loads(line) for line in (shared_data / "t2i_r1_train.jsonl").read_text().splitlines()]
    by_type = {row["task_type"]: row for row in rows}
    for i, row in enumerate(by_type.values()):
        rec = PromptRecord(**row, index=i)
        sent = reward_pb2.ScoreRequest.FromString(wire.request_bytes(f"r{i}", rec, imgs, transport))
        assert sent == wire.request_to_proto(f"r{i}", rec, imgs, transport), row["task_type"]
    with pytest.raises(ValueError, match="unknown transport 'jpeg'"):
        wire.request_bytes("r", rec, imgs, "jpeg")


def test_raw_pixels_are_row_major_rgb():
    img = np.zeros((2, 3, 3), np.uint8)
    img[1, 2] = (10, 20, 30)  # row 1, column 2: pixel 1 * 3 + 2 = 5, bytes 15..17
    cat = PromptRecord("a cat", "object", ["cat"])
    raw = wire.request_to_proto("r", cat, [img]).raw_images[0]
    assert (raw.height, raw.width, len(raw.rgb)) == (2, 3, 18)
    assert raw.rgb == bytes(15) + bytes([10, 20, 30])
    for build_request in (wire.request_to_proto, wire.request_bytes):
        with pytest.raises(ValueError, match=r"uint8 H x W x 3 RGB array, got uint8 \(2, 3, 4\)"):
            build_request("r", cat, [np.zeros((2, 3, 4), np.uint8)])
    with pytest.raises(ValueError, match="unknown transport 'jpeg'; expected one of raw, png"):
        wire.request_to_proto("r", PromptRecord("a cat", "object", ["cat"]), [img], "jpeg")


def test_png_size_reads_the_header_without_decoding():
    assert wire.png_size(encode_png(np.zeros((3, 11, 3), np.uint8))) == (11, 3)
    with pytest.raises(wire.BadRequest, match="not PNG"):
        wire.png_size(b"GIF89a" + bytes(40))


def test_decompression_bomb_is_refused_before_decoding():
    png = bytearray(encode_png(np.zeros((2, 2, 3), np.uint8)))
    png[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")  # IHDR claims 10^10 pixels
    req = reward_pb2.ScoreRequest(request_id="bomb", images=[bytes(png)])
    with pytest.raises(wire.BadRequest, match=r"request 'bomb': image 0 .*100000x100000 pixels"):
        wire.image_from_proto(req, wire.checked_image_count(req) - 1)


def test_details_typed_fields_and_extra_round_trip():
    details = {
        "boxes": [{"label": "cat", "box": [0.1, 0.2, 0.5, 0.75], "score": 0.875}],
        "questions": [{"question": "red car?", "p_yes": 0.625, "p_no": 0.25}],
        "colors": ["red"],
        "coverage": np.array([0.5, 0.25]),
        "n": np.int64(3),
        "note": None,
        "nested": {"a": [1, {"b": True}]},
    }
    msg = wire.details_to_proto(details)
    assert [(b.label, b.x0, b.y0, b.x1, b.y1, b.score) for b in msg.boxes] == [("cat", 0.1, 0.2, 0.5, 0.75, 0.875)]
    assert [(q.text, q.p_yes, q.p_no) for q in msg.questions] == [("red car?", 0.625, 0.25)]
    assert set(msg.extra.fields) == {"colors", "coverage", "n", "note", "nested"}
    back = wire.details_from_proto(reward_pb2.ImageDetails.FromString(msg.SerializeToString()))
    assert back == {
        "boxes": [{"label": "cat", "box": [0.1, 0.2, 0.5, 0.75], "score": 0.875}],
        "questions": [{"question": "red car?", "p_yes": 0.625, "p_no": 0.25}],
        "colors": ["red"],
        "coverage": [0.5, 0.25],
        "n": 3.0,
        "note": None,
        "nested": {"a": [1.0, {"b": True}]},
    }


def test_boxes_of_another_shape_travel_untyped():
    details = {"boxes": [{"label": "cat", "box": [1, 2, 3], "score": 0.5}]}  # 3 coordinates: not the typed form
    msg = wire.details_to_proto(details)
    assert not msg.boxes and wire.details_from_proto(msg) == {
        "boxes": [{"label": "cat", "box": [1.0, 2.0, 3.0], "score": 0.5}]
    }


def test_details_that_are_not_json_are_named():
    with pytest.raises(TypeError, match=r"details\['obj'\] is a object"):
        wire.details_to_proto({"obj": object()})


@pytest.mark.parametrize(
    "scores, message",
    [
        ([ImageScore(1.0)], "returned 1 scores for 2 images"),
        ([ImageScore(1.0), ImageScore(float("nan"))], r"non-finite score \(nan\) for image 1"),
        ([ImageScore(1.0), ImageScore(float("inf"))], r"non-finite score \(inf\) for image 1"),
        ([ImageScore(1.0), 0.5], "returned float for image 1"),
    ],
)
def test_check_scores(scores, message):
    with pytest.raises(ValueError, match=message):
        wire.check_scores(scores, 2, "x")


def test_channel_options_raise_both_limits():
    assert wire.channel_options(8) == [
        ("grpc.max_send_message_length", 8 * 2**20),
        ("grpc.max_receive_message_length", 8 * 2**20),
    ]
