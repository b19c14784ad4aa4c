"""DPT-Hybrid depth for 3D spatial on a tiny random DPTForDepthEstimation (BiT backbone, as Intel/dpt-hybrid-midas)
saved and loaded back: the depth map the 3D rule reads against the original's steps redone here (bilinear resize,
Normalize(0.5, 0.5), min-max, align-corners resize, 8-bit PNG round trip, UniDet-frame resize), then the 3D
evaluator on top of the GroundingDINO stand-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.base import EvalItem, Fidelity
from evaluation.compbench.depth import DptDepth
from evaluation.compbench.detection_rules import LabelGate, spatial_3d_score
from evaluation.compbench.detector import GdinoDetector
from evaluation.compbench.files import load_unidet_labels
from evaluation.compbench.spatial import Spatial3DEvaluator
from evaluation.local_files import MissingFilesError
from tests.tiny_compbench_models import require_spacy, threshold_between, tiny_dpt_dir
from tests.tiny_reward_models import tiny_gdino_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN_SIZE = 64  # the tiny model's "480 px" (its position-embedding grid is for 32 px)


@pytest.fixture(scope="module")
def depth(tmp_path_factory):
    return DptDepth.load(tiny_dpt_dir(tmp_path_factory.mktemp("dpt") / "model"), image_size=RUN_SIZE, batch_size=2)


def images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(48, 64, 3), (40, 40, 3), (48, 64, 3)]]


@torch.no_grad()
def reference_depth(model, image):
    height, width = image.shape[:2]
    pil = Image.fromarray(image).resize((RUN_SIZE, RUN_SIZE), Image.BILINEAR)
    x = (torch.tensor(np.asarray(pil), dtype=torch.float32).permute(2, 0, 1) / 255 - 0.5) / 0.5
    raw = model(pixel_values=x[None]).predicted_depth[0]
    assert raw.shape == (RUN_SIZE, RUN_SIZE) and raw.std() > 0
    d = (raw - raw.min()) / (raw.max() - raw.min())
    d = torch.nn.functional.interpolate(d[None, None], size=(height, width), mode="bilinear", align_corners=True)
    png = np.clip(255 * d[0, 0].numpy(), 0, 255).astype(np.uint8)  # PIL's float -> L: truncated
    frame = (480, 360) if (width, height) == (64, 48) else (479, 479)
    reloaded = Image.fromarray(png, "L").resize(frame, Image.BILINEAR)
    return torch.tensor(np.array(reloaded)).float() / 255


def test_frame_depth_matches_the_original_steps(depth):
    imgs = images()
    got = depth.frame_depth(imgs)  # batches of 2
    for g, im in zip(got, imgs):
        want = reference_depth(depth.model, im)
        assert g.shape == want.shape
        # one 8-bit level at most, where float noise crosses a truncation boundary
        assert (g - want).abs().max() <= 1 / 255 + 1e-6 and (g == want).float().mean() > 0.99


def test_missing_model_dir(tmp_path):
    with pytest.raises(MissingFilesError, match="does not exist.*Intel/dpt-hybrid-midas"):
        DptDepth.load(tmp_path / "dpt")


def test_spatial_3d_evaluator(depth, tmp_path_factory, shared_data):
    require_spacy()
    detector = GdinoDetector.load(tiny_gdino_dir(tmp_path_factory.mktemp("gdino") / "model"), score_threshold=0.0)
    gate = LabelGate(load_unidet_labels(shared_data / "t2i_compbench/unidet_labels_722.json"))
    evaluator = Spatial3DEvaluator(detector, depth, gate)
    prompts = ["a dog in front of a desk", "a mouse hidden by a key", "a woman behind a unicorn"]
    imgs = images()
    asked = [["dog", "desk"], ["mouse", "key"], ["person"]]
    detector.score_threshold = threshold_between([d.score for ds in detector.detect(imgs, asked) for d in ds])
    results = evaluator.score(imgs, [EvalItem("t2i_compbench", "3d_spatial", p, i, 0) for i, p in enumerate(prompts)])
    # substring gate: "mouse" is inside "computer mouse"; "unicorn" is in no label, so it is not asked about
    assert [r.details["asked"] for r in results] == asked
    assert [r.details["locality"] for r in results] == ["in front of", "hidden", "behind"]
    frames = depth.frame_depth(imgs)
    for r, im, frame, (o1, o2, loc) in zip(
        results,
        imgs,
        frames,
        [("dog", "desk", "in front of"), ("mouse", "key", "hidden"), ("person", "unicorn", "behind")],
    ):
        dets = detector.detect([im], [r.details["asked"]])[0]
        assert r.score == spatial_3d_score(o1, o2, loc, dets, frame)[0]
    assert any("depth_means" in r.details for r in results)  # both objects found at least once
    assert evaluator.fidelity == Fidelity.substitute and "DPT" in evaluator.fidelity_note
