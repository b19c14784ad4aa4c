"""PNG bytes for the wire and captioned grids for humans (no torch: reward servers use this too).

Image tokens become pixels in policy/model.py (:func:`policy.model.decode_image_tokens`), which needs the model.
"""

from __future__ import annotations

import io
import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def encode_png(image: np.ndarray) -> bytes:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 H x W x 3 RGB array, got {image.dtype} {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 RGB array. Raises ValueError on anything that is not a readable PNG."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not PNG data (bad signature)")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # PIL raises many types for corrupt files
        raise ValueError(f"corrupt PNG: {e}") from None


def caption_grid(
    images: list[np.ndarray], captions: list[str], columns: int = 4, cell: int = 192, caption_lines: int = 7
) -> Image.Image:
    """A grid of images, each with a wrapped caption under it (prompt, CoT, reward...)."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    font = ImageFont.load_default()
    line_h = 11
    text_h = caption_lines * line_h + 4
    rows = max(1, (len(images) + columns - 1) // columns)
    grid = Image.new("RGB", (columns * cell, rows * (cell + text_h)), "white")
    draw = ImageDraw.Draw(grid)
    chars = max(8, cell // 6)
    for i, (img, cap) in enumerate(zip(images, captions)):
        x, y = (i % columns) * cell, (i // columns) * (cell + text_h)
        grid.paste(Image.fromarray(img).resize((cell, cell), Image.NEAREST), (x, y))
        lines = textwrap.wrap(cap.replace("\n", " "), chars)[:caption_lines]
        for j, line in enumerate(lines):
            draw.text((x + 2, y + cell + 2 + j * line_h), line, fill="black", font=font)
    return grid
