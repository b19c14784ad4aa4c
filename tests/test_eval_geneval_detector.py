"""GenEval's detector: mmdet-style input (sizes by hand, pixels against OpenCV, mmcv's resize backend), the
instance post-processing on hand-built logits, and the whole detector on a tiny random Swin Mask2Former against
a plain numpy re-computation of mmdet's post-processing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import Mask2FormerForUniversalSegmentation

from evaluation.geneval.detector import Mask2FormerDetector
from evaluation.geneval.detector_input import MEAN, STD, detector_input, geometry
from evaluation.geneval.instances import instance_postprocess, mask_to_box
from evaluation.local_files import MissingFilesError
from tests.tiny_eval_models import block_scene, tiny_mask2former_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sig(x):
    return 1 / (1 + math.exp(-x))


# ------------------------------------------------------------------------------------------ input


@pytest.mark.parametrize(
    "hw, resized, padded",
    [
        ((384, 384), (800, 800), (800, 800)),  # Janus-Pro's images: factor 800/384
        ((500, 1000), (667, 1333), (672, 1344)),  # long side bound: factor 1.333, int(666.67 + 0.5)
        ((30, 40), (800, 1067), (800, 1088)),  # short side bound: factor 26.67, int(1066.67 + 0.5)
        ((48, 32), (1200, 800), (1216, 800)),
    ],
)
def test_geometry_by_hand(hw, resized, padded):
    g = geometry(*hw)
    assert (g.original, g.resized, g.padded) == (hw, resized, padded)


def test_input_matches_opencv_resize():
    cv2 = pytest.importorskip("cv2", reason="OpenCV (mmcv's resize backend) comes with vllm")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    image[:, :20] = [250, 10, 128]  # flat areas and a sharp edge next to the noise
    x, _ = detector_input([image])
    assert x.shape == (1, 3, 800, 1088) and x.dtype == torch.float32
    ref = cv2.resize(image, (1067, 800), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    ref = (ref - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
    got = x[0].permute(1, 2, 0).numpy()
    diff = np.abs(got[:, :1067] - ref) * np.array(STD, np.float32)  # in 0-255 levels
    assert diff.max() <= 1.0 + 1e-3  # OpenCV's fixed-point rounding: at most one level
    assert diff.mean() < 0.1
    assert np.all(got[:, 1067:] == 0)  # padding is zero after normalisation


def test_input_refuses_mixed_sizes():
    with pytest.raises(ValueError, match="one size"):
        detector_input([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)])


# ------------------------------------------------------------------------------------------ post-processing


def test_mask_to_box_exclusive_edges():
    m = torch.zeros(5, 6, dtype=torch.bool)
    m[1:3, 2:5] = True
    assert mask_to_box(m) == (2.0, 1.0, 5.0, 3.0)
    assert mask_to_box(torch.zeros(5, 6, dtype=torch.bool)) == (0.0, 0.0, 0.0, 0.0)


# Three queries, two classes (+ "no object"): softmax rows [0.6, 0.3 | 0.1], [0.1, 0.8 | 0.1], [0.5, 0.4 | 0.1].
CLASS_LOGITS = torch.log(torch.tensor([[6.0, 3.0, 1.0], [1.0, 8.0, 1.0], [5.0, 4.0, 1.0]]))
# 2x2 mask logits. Upsampled to 4x4 (half-pixel centres, edges clamped), 1-D [a, b] -> [a, .75a+.25b, .25a+.75b, b]:
#   q0 [[4,-4],[-4,-4]] -> rows [4,2,-2,-4], [2,.5,-2.5,-4], [-2,-2.5,-3.5,-4], [-4,-4,-4,-4]
#   q1 [[-1,-1],[-1,1]] -> rows [-1,-1,-1,-1], [-1,-.875,-.625,-.5], [-1,-.625,.125,.5], [-1,-.5,.5,1]
#   q2 all -1 -> empty mask
MASK_LOGITS = torch.tensor([[[4.0, -4.0], [-4.0, -4.0]], [[-1.0, -1.0], [-1.0, 1.0]], [[-1.0, -1.0], [-1.0, -1.0]]])


def test_postprocess_by_hand_crop_to_resized_image():
    # padded input 4x4, resized image 3x4 (the last row is padding), original 3x4: the crop must drop row 3.
    dets = instance_postprocess(
        CLASS_LOGITS, MASK_LOGITS, padded_size=(4, 4), resized_size=(3, 4), original_size=(3, 4), max_per_image=4
    )
    ms0 = (sig(4) + 2 * sig(2) + sig(0.5)) / 4  # q0 positive pixels: 4, 2 (row 0), 2, .5 (row 1)
    ms1 = (sig(0.125) + sig(0.5)) / 2  # q1: row 2 only, columns 2-3 (row 3, cropped, would add 0.5 and 1)
    # top 4 of the 6 (query, class) probabilities: .8 (q1,c1), .6 (q0,c0), .5 (q2,c0), .4 (q2,c1); .3 is cut
    dets = sorted(dets, key=lambda d: (-d.score, d.label))
    # scores .6 x .842 = .505 and .8 x .577 = .461: the mask score reorders the pairs
    assert [(d.label, d.box) for d in dets] == [
        (0, (0.0, 0.0, 2.0, 2.0)),
        (1, (2.0, 2.0, 4.0, 3.0)),
        (0, (0.0, 0.0, 0.0, 0.0)),
        (1, (0.0, 0.0, 0.0, 0.0)),
    ]
    assert [d.score for d in dets] == pytest.approx([0.6 * ms0, 0.8 * ms1, 0.0, 0.0], abs=1e-6)
    q0 = next(d for d in dets if d.label == 0 and d.score > 0)
    np.testing.assert_array_equal(q0.mask, [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]])


def test_postprocess_by_hand_resize_to_original():
    # original 3x2: columns averaged in pairs, (0,1) and (2,3); q0 rows -> [3,-3], [1.25,-3.25], [-2.25,-3.75]
    dets = instance_postprocess(
        CLASS_LOGITS, MASK_LOGITS, padded_size=(4, 4), resized_size=(3, 4), original_size=(3, 2), max_per_image=2
    )
    assert [d.label for d in dets] == [1, 0]
    q0 = dets[1]
    np.testing.assert_array_equal(q0.mask, [[1, 0], [1, 0], [0, 0]])
    assert q0.box == (0.0, 0.0, 1.0, 2.0)
    assert q0.score == pytest.approx(0.6 * (sig(3) + sig(1.25)) / 2, abs=1e-6)
    # q1 row 2: [(-1-.625)/2, (.125+.5)/2] = [-.8125, .3125]
    assert dets[0].box == (1.0, 2.0, 2.0, 3.0) and dets[0].score == pytest.approx(0.8 * sig(0.3125), abs=1e-6)


# ------------------------------------------------------------------------------------------ whole detector


def bilinear_np(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize of the last two axes with clamped edges (OpenCV INTER_LINEAR,
    torch align_corners=False), written out."""

    def axis(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, wy = axis(a.shape[-2], out_h)
    x0, x1, wx = axis(a.shape[-1], out_w)
    rows = a[..., y0, :] * (1 - wy)[:, None] + a[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def reference_detections(model, image):
    """mmdet's instance post-processing in numpy, on the model's outputs for this image alone."""
    pixels, g = detector_input([image])
    with torch.no_grad():
        out = model(pixel_values=pixels)
    cls = out.class_queries_logits[0].double().numpy()
    prob = np.exp(cls - cls.max(1, keepdims=True))
    prob = (prob / prob.sum(1, keepdims=True))[:, :-1]
    n_cls = prob.shape[1]
    order = np.argsort(-prob.ravel())[:100]
    masks = out.masks_queries_logits[0].double().numpy()
    upsampled = {}
    dets = []
    for flat in order:
        q, c = divmod(int(flat), n_cls)
        if q not in upsampled:
            upsampled[q] = bilinear_np(bilinear_np(masks[q], *g.padded)[: g.resized[0], : g.resized[1]], *g.original)
        m = upsampled[q]
        inside = m > 0
        ys, xs = np.nonzero(inside)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (0, 0, 0, 0)
        score = prob[q, c] * (1 / (1 + np.exp(-m[inside]))).sum() / (inside.sum() + 1e-6)
        dets.append((c, score, tuple(float(v) for v in box), inside, np.abs(m)))
    return dets


def test_detector_matches_numpy_reference(tmp_path):
    path = tiny_mask2former_dir(tmp_path / "m2f")
    detector = Mask2FormerDetector.load(path, batch_size=2)
    model = Mask2FormerForUniversalSegmentation.from_pretrained(path).eval()
    images = [block_scene(32, 32, 0), block_scene(48, 32, 1), block_scene(32, 32, 2)]  # two sizes: batched by size
    got = detector.detect(images)
    for image, dets in zip(images, got):
        ref = reference_detections(model, image)
        assert len(dets) == len(ref) == 40  # 8 queries x 5 classes, all within the top 100
        dets = sorted(dets, key=lambda d: -d.score)
        ref = sorted(ref, key=lambda r: -r[1])
        np.testing.assert_allclose([d.score for d in dets], [r[1] for r in ref], atol=1e-4)
        for d, (_label, _score, box, mask, margin) in zip(dets, ref):
            assert d.mask.shape == image.shape[:2]
            clear = margin > 1e-3  # pixels whose logit is not within float noise of the threshold
            np.testing.assert_array_equal(d.mask[clear], mask[clear])
            if clear.all():
                assert d.box == box
    # the scenes give partial masks too: not every box is the whole image
    assert any(
        d.box != (0.0, 0.0, float(im.shape[1]), float(im.shape[0]))
        for im, dets in zip(images, got)
        for d in dets
        if d.score > 0.3
    )


def test_missing_or_incomplete_detector_dir(tmp_path):
    with pytest.raises(
        MissingFilesError,
        match=r"GenEval detector \(Mask2Former.*\) model directory .*does not exist.*config\.json.*"
        r"facebook/mask2former-swin-small-coco-instance",
    ):
        Mask2FormerDetector.load(tmp_path / "nowhere")
    (tmp_path / "m2f").mkdir()
    (tmp_path / "m2f" / "config.json").write_text("{}")
    with pytest.raises(MissingFilesError, match=r"incomplete: missing model\.safetensors or model-\*\.safetensors"):
        Mask2FormerDetector.load(tmp_path / "m2f")
