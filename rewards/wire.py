"""Between Python objects and the reward service's messages (protos/reward.proto), both directions.

Server side: a ScoreRequest is checked and turned into (PromptRecord, images); anything wrong with it raises
:class:`BadRequest`, which the server answers with INVALID_ARGUMENT and this message. Client side: the reverse.
Only protobuf crosses the wire (pixels or PNG bytes, strings, numbers): nothing is pickled.

Images travel by ``rewards.transport``: ``raw`` (uint8 RGB pixels with their height and width: no encoding or
decoding, 0.44 MB per 384-px image) or ``png`` (lossless and about 2.7x smaller on smooth images, but 8-16 ms
to encode and 4-8 ms to decode per 384-px image on one core, BENCHMARKS.md; for reward servers across a slow
network). The server accepts both.

Per-image details: a scorer's ``ImageScore.details`` dict travels in typed fields where it uses the common
shapes below, and in a ``google.protobuf.Struct`` for everything else; :func:`details_from_proto` rebuilds the
same dict (Struct numbers come back as floats).

* ``details["boxes"]``: a list of ``{"label": str, "box": [x0, y0, x1, y1], "score": float}``
* ``details["questions"]``: a list of ``{"question": str, "p_yes": float, "p_no": float}``
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from google.protobuf import struct_pb2

from core.images import decode_png, encode_png
from core.records import PromptRecord
from protos import reward_pb2
from rewards.base import TASK_TYPES, ImageScore
from rewards.config import Transport

# Largest decoded image accepted. A PNG of a few KiB can inflate to gigabytes; the message limit alone does not
# bound the decoded size, so the server reads the size from the PNG header before decoding.
MAX_IMAGE_PIXELS = 4096 * 4096
TRANSPORTS = tuple(t.value for t in Transport)  # rewards.transport

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOX_KEYS = {"label", "box", "score"}
QUESTION_KEYS = {"question", "p_yes", "p_no"}


class BadRequest(ValueError):
    """A ScoreRequest that cannot be scored as sent; the message says what is wrong and how to fix it."""


# ------------------------------------------------------------------------------------------ request


def _check_rgb(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 RGB array, got {image.dtype} {image.shape}")


def _add_image(req: reward_pb2.ScoreRequest, image: np.ndarray, transport: str) -> None:
    """Append one uint8 H x W x 3 array to the request: as raw pixels (row-major RGB bytes with its height and
    width) or as a PNG file, as ``transport`` says."""
    if transport == "png":
        req.images.append(encode_png(image))
        return
    _check_rgb(image)
    req.raw_images.add(height=image.shape[0], width=image.shape[1], rgb=image.tobytes())


def _request_without_images(
    request_id: str, record: PromptRecord, n_images: int, transport: str
) -> reward_pb2.ScoreRequest:
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; expected one of {', '.join(TRANSPORTS)}")
    md = reward_pb2.TaskMetadata(task_type=record.task_type, nouns=list(record.nouns))
    if record.attr_nouns is not None:
        md.attr_nouns.values.extend(record.attr_nouns)
    if record.spatial_info is not None:
        md.spatial_info.CopyFrom(
            reward_pb2.SpatialInfo(
                obj1=str(record.spatial_info.get("obj1", "")),
                obj2=str(record.spatial_info.get("obj2", "")),
                locality=str(record.spatial_info.get("locality", "")),
            )
        )
    if record.numeracy_info is not None:
        md.numeracy_info.SetInParent()  # present even when the list is empty
        for item in record.numeracy_info:
            md.numeracy_info.items.add(obj_name=str(item.get("obj_name", "")), num=int(item.get("num", 0)))
    return reward_pb2.ScoreRequest(
        request_id=request_id, prompt=record.prompt, metadata=md, num_images=n_images, prompt_index=record.index
    )


def request_to_proto(
    request_id: str, record: PromptRecord, images: Sequence[np.ndarray], transport: str = "raw"
) -> reward_pb2.ScoreRequest:
    """One group: the raw prompt, its metadata and the images (raw pixels or PNG, see ``TRANSPORTS``), with the
    image count stated."""
    req = _request_without_images(request_id, record, len(images), transport)
    for im in images:
        _add_image(req, im, transport)
    return req


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(message: type, field: str) -> bytes:
    """The key protobuf writes before a length-delimited field (bytes, string, message): number, wire type 2."""
    return _varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | 2)


RAW_IMAGES_KEY = _key(reward_pb2.ScoreRequest, "raw_images")
PNG_IMAGES_KEY = _key(reward_pb2.ScoreRequest, "images")
RGB_KEY = _key(reward_pb2.RawImage, "rgb")


def _image_field(image: np.ndarray, transport: str) -> list:
    """One image as one more element of the request's repeated field, serialised: key, length, content (the
    pixels as a view of the array, copied once, into the message)."""
    if transport == "png":
        data = encode_png(image)
        return [PNG_IMAGES_KEY, _varint(len(data)), data]
    _check_rgb(image)
    pixels = memoryview(np.ascontiguousarray(image)).cast("B")
    shape = reward_pb2.RawImage(height=image.shape[0], width=image.shape[1]).SerializeToString()
    head = shape + RGB_KEY + _varint(pixels.nbytes)
    return [RAW_IMAGES_KEY, _varint(len(head) + pixels.nbytes), head, pixels]


def request_bytes(request_id: str, record: PromptRecord, images: Sequence[np.ndarray], transport: str = "raw") -> bytes:
    """The serialised :func:`request_to_proto` (what the client sends), written straight from the arrays: the
    request without its images, then each image as one more element of its repeated field (protobuf reads fields
    in any order and appends repeated ones, so the server parses the same request). The pixels are copied once,
    into one buffer of the message's size; building the message and serialising it copies them three times, into
    buffers of which glibc hands the multi-megabyte ones back to the kernel and faults them in again on the next
    call (bench_reward's encode and wire times).
    """
    parts = [_request_without_images(request_id, record, len(images), transport).SerializeToString()]
    for im in images:
        parts += _image_field(im, transport)
    return b"".join(parts)


def record_from_proto(req: reward_pb2.ScoreRequest) -> PromptRecord:
    """The request's prompt record, checked: a known task type and the metadata fields that type needs."""
    where = f"request {req.request_id!r}"
    if not req.prompt.strip():
        raise BadRequest(f"{where}: empty prompt")
    if not req.HasField("metadata"):
        raise BadRequest(f"{where}: no metadata; send task_type and nouns (and spatial_info / numeracy_info)")
    md = req.metadata
    if md.task_type not in TASK_TYPES:
        raise BadRequest(f"{where}: unknown task_type {md.task_type!r}; expected one of {', '.join(TASK_TYPES)}")
    if not md.nouns or any(not n.strip() for n in md.nouns):
        raise BadRequest(f"{where}: metadata.nouns is missing or has an empty noun (got {list(md.nouns)})")
    spatial = numeracy = None
    if md.task_type == "spatial":
        s = md.spatial_info
        missing = [k for k in ("obj1", "obj2", "locality") if not getattr(s, k).strip()]
        if not md.HasField("spatial_info") or missing:
            raise BadRequest(
                f"{where}: task_type 'spatial' needs metadata.spatial_info with obj1, obj2 and "
                f"locality; missing {', '.join(missing)}"
            )
        spatial = {"obj1": s.obj1, "obj2": s.obj2, "locality": s.locality}
    elif md.HasField("spatial_info"):
        spatial = {"obj1": md.spatial_info.obj1, "obj2": md.spatial_info.obj2, "locality": md.spatial_info.locality}
    if md.task_type == "numeracy" and (not md.HasField("numeracy_info") or not md.numeracy_info.items):
        raise BadRequest(
            f"{where}: task_type 'numeracy' needs metadata.numeracy_info with at least one {{obj_name, num}} item"
        )
    if md.HasField("numeracy_info"):
        for i, item in enumerate(md.numeracy_info.items):
            if not item.obj_name.strip() or item.num < 1:
                raise BadRequest(
                    f"{where}: numeracy_info item {i} needs a non-empty obj_name and num >= 1, got "
                    f"obj_name={item.obj_name!r} num={item.num}"
                )
        numeracy = [{"obj_name": it.obj_name, "num": it.num} for it in md.numeracy_info.items]
    return PromptRecord(
        prompt=req.prompt,
        task_type=md.task_type,
        nouns=list(md.nouns),
        attr_nouns=list(md.attr_nouns.values) if md.HasField("attr_nouns") else None,
        spatial_info=spatial,
        numeracy_info=numeracy,
        index=req.prompt_index,
    )


def record_problems(record: PromptRecord) -> list[str]:
    """What :func:`record_from_proto` (the server) refuses in any request for ``record``; [] when nothing."""
    try:
        record_from_proto(request_to_proto("check", record, []))
    except BadRequest as e:
        return [str(e).removeprefix("request 'check': ")]
    return []


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, without decoding. Raises BadRequest if there is none."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise BadRequest("not PNG data (no PNG signature and IHDR header)")
    return struct.unpack(">II", data[16:24])


def check_pixel_count(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise BadRequest(f"{width}x{height} pixels is more than the {MAX_IMAGE_PIXELS} accepted")


def image_count(req: reward_pb2.ScoreRequest) -> int:
    """How many images the request carries, whichever way they travel."""
    return len(req.raw_images) or len(req.images)


def pixels_from_raw(raw: reward_pb2.RawImage) -> np.ndarray:
    """The uint8 H x W x 3 array of a RawImage (no copy); raises BadRequest when the bytes do not fit the shape."""
    h, w = raw.height, raw.width
    if h == 0 or w == 0:
        raise BadRequest(f"height {h} and width {w}: both must be >= 1")
    check_pixel_count(w, h)
    rgb = raw.rgb
    if len(rgb) != h * w * 3:
        raise BadRequest(f"{len(rgb)} bytes of pixels, but a {w}x{h} RGB image needs height x width x 3 = {h * w * 3}")
    return np.frombuffer(rgb, np.uint8).reshape(h, w, 3)


def checked_image_count(req: reward_pb2.ScoreRequest) -> int:
    """How many images the request carries, checked: at least one, all sent one way, as many as ``num_images``
    says when it is set."""
    where = f"request {req.request_id!r}"
    if req.images and req.raw_images:
        raise BadRequest(
            f"{where}: carries both PNG images ({len(req.images)}) and raw_images "
            f"({len(req.raw_images)}); send the group's images one way"
        )
    n = image_count(req)
    if not n:
        raise BadRequest(f"{where}: empty group (no images); send the G images of one prompt")
    if req.HasField("num_images") and req.num_images != n:
        raise BadRequest(f"{where}: num_images says {req.num_images} but the request carries {n} images")
    return n


def image_from_proto(req: reward_pb2.ScoreRequest, i: int) -> np.ndarray:
    """Image ``i`` of a request whose count was checked, as a uint8 RGB array: raw pixels checked against their
    shape, or a PNG decoded."""
    if req.raw_images:
        try:
            return pixels_from_raw(req.raw_images[i])
        except BadRequest as e:
            raise BadRequest(f"request {req.request_id!r}: raw image {i}: {e}") from None
    data = req.images[i]
    try:
        check_pixel_count(*png_size(data))
        return decode_png(data)
    except ValueError as e:  # BadRequest, or decode_png's "corrupt PNG: ..."
        raise BadRequest(f"request {req.request_id!r}: image {i} ({len(data)} bytes): {e}") from None


# ------------------------------------------------------------------------------------------ reply


def _jsonable(value: Any, key: str) -> Any:
    """numpy scalars and arrays to plain Python, so that a Struct can hold them; reject anything else."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"details[{key!r}] is a {type(value).__name__}, not a JSON value (str, number, bool, None, list, dict)"
    )


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _typed_boxes(value: Any) -> Optional[list[reward_pb2.Box]]:
    """The typed form when every entry has exactly the documented shape, else None (the value goes to extra)."""
    if not isinstance(value, list) or not all(isinstance(b, dict) and set(b) == BOX_KEYS for b in value):
        return None
    if not all(
        isinstance(b["label"], str)
        and isinstance(b["box"], list)
        and len(b["box"]) == 4
        and all(_is_number(x) for x in b["box"])
        and _is_number(b["score"])
        for b in value
    ):
        return None
    return [
        reward_pb2.Box(
            label=b["label"], x0=b["box"][0], y0=b["box"][1], x1=b["box"][2], y1=b["box"][3], score=b["score"]
        )
        for b in value
    ]


def _typed_questions(value: Any) -> Optional[list[reward_pb2.Question]]:
    if not isinstance(value, list) or not all(isinstance(q, dict) and set(q) == QUESTION_KEYS for q in value):
        return None
    if not all(isinstance(q["question"], str) and _is_number(q["p_yes"]) and _is_number(q["p_no"]) for q in value):
        return None
    return [reward_pb2.Question(text=q["question"], p_yes=q["p_yes"], p_no=q["p_no"]) for q in value]


def details_to_proto(details: dict[str, Any]) -> reward_pb2.ImageDetails:
    out = reward_pb2.ImageDetails()
    extra: dict[str, Any] = {}
    for key, value in details.items():
        value = _jsonable(value, key)
        typed = _typed_boxes(value) if key == "boxes" else _typed_questions(value) if key == "questions" else None
        if typed is None:
            extra[key] = value
        elif key == "boxes":
            out.boxes.extend(typed)
        else:
            out.questions.extend(typed)
    if extra:
        out.extra.update(extra)
    return out


def _struct_value(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return {k: _struct_value(x) for k, x in v.struct_value.fields.items()}
    if kind == "list_value":
        return [_struct_value(x) for x in v.list_value.values]
    return None if kind in (None, "null_value") else getattr(v, kind)


def details_from_proto(msg: reward_pb2.ImageDetails) -> dict[str, Any]:
    out = {k: _struct_value(v) for k, v in msg.extra.fields.items()}
    if msg.boxes:
        out["boxes"] = [{"label": b.label, "box": [b.x0, b.y0, b.x1, b.y1], "score": b.score} for b in msg.boxes]
    if msg.questions:
        out["questions"] = [{"question": q.text, "p_yes": q.p_yes, "p_no": q.p_no} for q in msg.questions]
    return out


def check_scores(scores: Sequence[ImageScore], n_images: int, scorer: str) -> None:
    """A scorer must return one finite score per image; anything else is the scorer's fault (INTERNAL)."""
    if len(scores) != n_images:
        raise ValueError(f"scorer {scorer!r} returned {len(scores)} scores for {n_images} images")
    for i, s in enumerate(scores):
        if not isinstance(s, ImageScore) or not isinstance(s.score, (int, float, np.floating, np.integer)):
            raise ValueError(
                f"scorer {scorer!r} returned {type(s).__name__} for image {i}, not an ImageScore with a number"
            )
        if not math.isfinite(float(s.score)):
            raise ValueError(f"scorer {scorer!r} returned a non-finite score ({s.score}) for image {i}")


# ------------------------------------------------------------------------------------------ both ends

AUTH_HEADER = "authorization"  # metadata key of the shared secret: "Bearer <token>"


def channel_options(max_message_mb: int) -> list[tuple[str, int]]:
    """gRPC's receive limit is 4 MiB by default; both ends raise it (and cap sends) to the configured size."""
    limit = int(max_message_mb) * 2**20
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def auth_value(token: str) -> str:
    return f"Bearer {token}"


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
