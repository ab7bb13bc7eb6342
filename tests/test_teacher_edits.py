"""Blendshape teacher and synthetic AU edits (exact labels and flow)."""

import numpy as np
import pytest

from rtatl_sdk.contract import geometry as g
from rtatl_sdk.contract.au import AU_SETS
from tests.helpers import mean_face
from training.teacher import BLENDSHAPE_AUS, teacher_scores

AUS = AU_SETS["BP4D"]


def test_teacher_maps_every_openface_au_and_takes_the_larger_side():
    assert set(BLENDSHAPE_AUS) == set(AU_SETS["OPENFACE"]) | set(AUS)  # OpenFace's 18 and BP4D's AU24
    s = teacher_scores({"mouthSmileLeft": 0.2, "mouthSmileRight": 0.9, "browInnerUp": 0.4}, AUS)
    assert s[AUS.index(12)] == 0.9 and s[AUS.index(1)] == 0.4 and s[AUS.index(4)] == 0.0


def test_edit_moves_the_right_landmarks_the_right_way():
    edits = pytest.importorskip("training.edits")
    pts = mean_face() + g.CENTRE_CROP_OFFSET
    iod = np.linalg.norm(g.five_points(pts)[1] - g.five_points(pts)[0])
    new = edits.edit_landmarks(pts, (12,))
    d = new - pts
    assert d[48, 0] < 0 < d[54, 0] and d[48, 1] < 0 and d[54, 1] < 0  # corners out and up
    assert np.allclose(d[:17], 0) and np.allclose(d[36:48], 0)  # jaw and eyes untouched
    assert np.isclose(abs(d[54, 0]), 0.09 * iod)
    up = edits.edit_landmarks(pts, (1,)) - pts
    assert up[21, 1] < 0 and up[22, 1] < 0 and np.allclose(up[48:], 0)


def test_apply_edit_gives_exact_flow_and_pins_the_border():
    edits = pytest.importorskip("training.edits")
    rng = np.random.default_rng(0)
    pts = mean_face() + g.CENTRE_CROP_OFFSET
    img = rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)
    edited, new, flow = edits.apply_edit(img, pts, (12, 2), strength=1.5)
    assert edited.shape == img.shape and flow.shape == (2, 200, 200)
    for k in (48, 54, 17, 26):  # the flow at a moved landmark is its displacement
        x, y = np.round(pts[k]).astype(int)
        assert np.allclose(flow[:, y, x], new[k] - pts[k], atol=0.6)
    assert np.abs(flow[:, :5, :]).max() < 1e-3 and np.abs(flow[:, :, :5]).max() < 1e-3  # background pinned
    assert np.abs(flow).max() > 3.0


def test_openface_aus_have_centres_teacher_scores_and_edits_that_move_their_region():
    edits = pytest.importorskip("training.edits")
    aus = AU_SETS["OPENFACE"]
    assert len(aus) == 18 and set(aus) <= set(edits.AU_EDITS)
    pts = mean_face() + g.CENTRE_CROP_OFFSET
    cen = g.au_centres(pts, aus)
    assert cen.shape == (36, 2) and ((cen > 0) & (cen < 200)).all()
    s = teacher_scores({"jawOpen": 0.7, "eyeBlinkLeft": 0.9, "noseSneerRight": 0.3}, aus)
    assert s[aus.index(26)] == s[aus.index(25)] == 0.7 and s[aus.index(45)] == 0.9 and s[aus.index(9)] == 0.3
    d = edits.edit_landmarks(pts, (26,)) - pts
    assert d[8, 1] > 0 and d[57, 1] > 0 and np.allclose(d[17:48], 0)  # the jaw drops, brows and eyes stay
    d = edits.edit_landmarks(pts, (45,)) - pts
    assert d[37, 1] > 0 and d[44, 1] > 0 and np.allclose(d[48:], 0)  # upper lids come down
    d = edits.edit_landmarks(pts, (5,)) - pts
    assert d[38, 1] < 0 and d[43, 1] < 0  # and go up for the upper lid raiser
