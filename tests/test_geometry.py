import numpy as np
import pytest

from rtatl_sdk.contract import geometry as g
from rtatl_sdk.contract import landmarks as lm
from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.errors import InputError
from tests.helpers import mean_face


def test_flip_permutation_is_an_involution_with_known_pairs():
    p = lm.FLIP_PERMUTATION
    assert sorted(p.tolist()) == list(range(68))
    assert np.array_equal(p[p], np.arange(68))
    assert (p[36], p[39], p[48], p[0], p[17]) == (45, 42, 54, 16, 26)
    assert (p[30], p[51], p[57], p[62], p[66], p[8]) == (30, 51, 57, 62, 66, 8)


def test_flip_landmarks_twice_is_identity_and_mirrors_eyes():
    pts = mean_face()
    f = lm.flip_landmarks(pts, 192)
    assert np.allclose(lm.flip_landmarks(f, 192), pts)
    # after a flip, point 36 (image-left eye corner) is the mirror of the old point 45
    assert np.allclose(f[36], [191 - pts[45, 0], pts[45, 1]])
    assert f[36, 0] < f[45, 0]


def test_template_is_level_centred_and_leaves_room_for_brows_and_chin():
    t = g.TEMPLATE_5
    assert abs(t[0, 1] - t[1, 1]) < 0.5  # eyes level
    assert abs((t[0, 0] + t[1, 0]) / 2 - 100) < 1.0  # centred
    eye_mouth = t[3:, 1].mean() - t[:2, 1].mean()
    # the brows (~0.4 eye-mouth distance above the eyes) and the chin (~0.75 below the mouth)
    # stay inside the 192 centre crop
    assert t[:2, 1].mean() - 0.4 * eye_mouth > g.CENTRE_CROP_OFFSET + 10
    assert t[3:, 1].mean() + 0.75 * eye_mouth < g.CENTRE_CROP_OFFSET + g.CROP_SIZE


def test_similarity_recovers_known_transform_and_rejects_degenerate():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 300, (5, 2))
    ang, s, t = 0.3, 1.7, np.array([12.0, -40.0])
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ rot.T + t
    m = g.similarity_transform(src, dst, weights=[2, 2, 1, 0.5, 0.5])
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-7)
    assert np.allclose(g.apply_transform(g.invert_transform(m), dst), src, atol=1e-7)
    with pytest.raises(InputError, match="points"):
        g.similarity_transform(np.ones((5, 2)), dst)


@pytest.mark.parametrize("dataset", sorted(AU_SETS))
def test_au_centres_follow_the_rules(dataset):
    aus = AU_SETS[dataset]
    pts = mean_face()
    c = g.au_centres(pts, aus)
    assert c.shape == (2 * len(aus), 2)
    s = abs(pts[42, 0] - pts[39, 0])
    i12 = aus.index(12)
    assert np.allclose(c[2 * i12], pts[48]) and np.allclose(c[2 * i12 + 1], pts[54])
    i1 = aus.index(1)
    assert np.allclose(c[2 * i1], pts[21] - [0, s / 2]) and np.allclose(c[2 * i1 + 1], pts[22] - [0, s / 2])
    assert np.all(c[2 * i1:2 * i1 + 2, 1] < pts[[21, 22], 1])  # above the inner brows
    # every centre inside the crop, every RoI at least partly inside
    assert np.all((c > 0) & (c < g.CROP_SIZE))
    boxes = g.roi_boxes(c)
    assert np.allclose(boxes[:, 2:] - boxes[:, :2], g.ROI_SIZE)


@pytest.mark.parametrize("dataset", sorted(AU_SETS))
def test_flip_maps_each_centre_onto_its_mirror_twin(dataset):
    aus = AU_SETS[dataset]
    rng = np.random.default_rng(1)
    for _ in range(5):
        pts = mean_face(rng, jitter=2.0)
        from_flipped = g.au_centres(lm.flip_landmarks(pts, g.CROP_SIZE), aus)
        assert np.allclose(from_flipped, g.flip_centres(g.au_centres(pts, aus), aus, g.CROP_SIZE))
    perm = g.centre_flip_permutation(aus)
    i23 = [i for i, a in enumerate(aus) if a in (23, 24, 25)]
    for i in i23:  # top/bottom lip pair keeps its order
        assert perm[2 * i] == 2 * i
    i12 = aus.index(12)
    assert perm[2 * i12] == 2 * i12 + 1


def test_crop_points_and_centre_crop():
    canvas = np.zeros((200, 200, 3), np.uint8)
    canvas[4, 4] = 255
    crop = g.centre_crop(canvas)
    assert crop.shape == (192, 192, 3) and crop[0, 0, 0] == 255
    assert np.allclose(g.crop_points([[4.0, 4.0]], (4, 4)), [[0.0, 0.0]])


def test_mediapipe_map_and_bad_shapes():
    mesh = np.arange(478 * 3, dtype=float).reshape(478, 3)
    out = lm.mediapipe_to_68(mesh)
    assert out.shape == (68, 2) and np.allclose(out[30], mesh[4, :2])
    assert len(set(lm.MEDIAPIPE_TO_68.tolist())) == 68
    with pytest.raises(InputError, match="mesh"):
        lm.mediapipe_to_68(np.zeros((10, 3)))
    with pytest.raises(InputError, match="landmarks"):
        g.au_centres(np.zeros((5, 2)), (1,))
    bad = mean_face()
    bad[3, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        g.au_centres(bad, (1,))
