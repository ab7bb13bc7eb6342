"""The face pipeline on real media (marked `media`)."""

import numpy as np
import pytest

from rtatl_sdk import load_image
from rtatl_sdk.contract import geometry as g
from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.stream.video import iter_frames

pytestmark = pytest.mark.media


@pytest.mark.parametrize("name,count", [("single_face.jpg", 1), ("multi_face.jpg", 5), ("free-mountain-vector-01.jpg", 0)])
def test_face_counts(media, pipeline, name, count):
    faces = pipeline.process(load_image(media / name))
    assert len(faces) == count
    for f in faces:
        assert f.landmarks.shape == (68, 2) and f.mesh.shape == (478, 3)
        assert f.box.x <= f.landmarks[30, 0] <= f.box.x + f.box.w  # nose tip inside the box


def test_no_face_video_has_no_face(media, pipeline):
    frames = list(iter_frames(media / "no_face.mp4"))
    counts = [len(pipeline.detector.detect(fr.image)) for fr in frames if fr.image is not None]
    # the container lists 98 frames; the last 3 do not decode and come back as image=None
    assert len(frames) == 98 and len(counts) >= 95 and sum(counts) == 0


def test_face_appears_part_way(media, pipeline):
    has = [len(pipeline.process(fr.image)) > 0 for fr in iter_frames(media / "noface_face.mov")]
    first = has.index(True)
    assert first >= 10 and not any(has[:first])
    assert 60 <= sum(has) <= 90  # about 73 of 169 frames show the face


def test_alignment_puts_eyes_on_the_template(media, pipeline):
    (face,) = pipeline.process(load_image(media / "single_face.jpg"))
    eyes = g.five_points(face.aligned.landmarks)[:2]
    assert np.linalg.norm(eyes - g.TEMPLATE_5[:2], axis=1).max() < 3.0
    assert face.aligned.image.shape == (200, 200, 3)


def test_all_five_faces_aligned_upright(media, pipeline):
    faces = pipeline.process(load_image(media / "multi_face.jpg"))
    assert len(faces) == 5
    for f in faces:
        assert f.aligned.image.shape == (200, 200, 3)
        p = f.aligned.landmarks
        eye_r, eye_l = p[36:42].mean(0), p[42:48].mean(0)
        angle = np.degrees(np.arctan2(eye_l[1] - eye_r[1], eye_l[0] - eye_r[0]))
        assert abs(angle) < 5.0
        assert eye_r[0] < eye_l[0] and p[8, 1] > p[57, 1] > p[30, 1] > eye_r[1] > p[19, 1]


def test_au_centres_on_real_faces(media, pipeline):
    aus = AU_SETS["BP4D"]
    for f in pipeline.process(load_image(media / "multi_face.jpg")):
        c = f.au_centres(aus)
        crop_pts = f.crop_landmarks()
        i12 = aus.index(12)
        assert np.allclose(c[2 * i12:2 * i12 + 2], crop_pts[[48, 54]])
        i1 = aus.index(1)
        assert np.all(c[2 * i1:2 * i1 + 2, 1] < crop_pts[[21, 22], 1] - 5)


def test_flipping_the_image_maps_centres_onto_mirror_twins(media, pipeline):
    aus = AU_SETS["BP4D"]
    img = load_image(media / "single_face.jpg")
    (a,) = pipeline.process(img)
    (b,) = pipeline.process(np.ascontiguousarray(img[:, ::-1]))
    ca = a.au_centres(aus)
    cb = b.au_centres(aus)
    # centres of the flipped photo = mirror of the original's, re-ordered left<->right
    expected = g.flip_centres(ca, aus, g.CROP_SIZE)
    assert np.abs(cb - expected).max() < 5.0
    assert np.abs(cb - expected).mean() < 2.0
