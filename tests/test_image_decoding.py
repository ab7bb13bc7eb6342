"""Images come out as viewers show them: EXIF orientation, header size checks, 16-bit PIL."""

import io
import time

import cv2
import numpy as np
import pytest

from rtatl_sdk.errors import InputError
from rtatl_sdk.io.images import apply_orientation, exif_orientation, header_size, load_image

PIL = pytest.importorskip("PIL.Image")

# stored pixels for each EXIF orientation, given the upright image (the inverse of the display transform)
STORED = {
    3: lambda up: up[::-1, ::-1],
    6: lambda up: cv2.rotate(up, cv2.ROTATE_90_COUNTERCLOCKWISE),
    8: lambda up: cv2.rotate(up, cv2.ROTATE_90_CLOCKWISE),
    2: lambda up: up[:, ::-1],
}


def _jpeg_with_orientation(bgr: np.ndarray, orientation: int) -> bytes:
    img = PIL.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))
    exif = PIL.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_exif_orientation_is_applied_to_files_and_bytes(orientation, tmp_path):
    rng = np.random.default_rng(orientation)
    up = cv2.GaussianBlur(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8), (0, 0), 3)  # smooth: JPEG-safe
    data = _jpeg_with_orientation(STORED[orientation](up), orientation)
    assert exif_orientation(data) == orientation
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    for got in (load_image(path), load_image(data)):
        assert got.shape == up.shape
        assert np.abs(got.astype(int) - up).mean() < 3


@pytest.mark.media
def test_a_sideways_stored_portrait_finds_its_face_upright(media, pipeline, tmp_path):
    up = cv2.imread(str(media / "single_face.jpg"))
    (ref,) = pipeline.process(up)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(_jpeg_with_orientation(STORED[6](up), 6))
    faces = pipeline.process(load_image(path))
    assert len(faces) == 1
    box = faces[0].box
    assert abs(box.x - ref.box.x) < 8 and abs(box.y - ref.box.y) < 8, (box, ref.box)


def test_pil_images_follow_their_exif_orientation_too():
    up = np.zeros((40, 70, 3), np.uint8)
    up[:10, :20] = 255
    data = _jpeg_with_orientation(STORED[3](up), 3)
    got = load_image(PIL.open(io.BytesIO(data)))
    assert got.shape == up.shape and got[:10, :20].mean() > 200 and got[30:, 50:].mean() < 50


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp"])
def test_header_size_reads_common_formats(ext):
    ok, buf = cv2.imencode(ext, np.zeros((23, 37, 3), np.uint8))
    assert ok
    assert header_size(buf.tobytes()) == (37, 23)


def test_huge_image_is_refused_from_its_header_before_decoding():
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))  # noqa: E731
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 20001 * 50)) + chunk(b"IEND", b"")
    t = time.perf_counter()
    with pytest.raises(InputError, match="20000x20000"):
        load_image(png)
    assert time.perf_counter() - t < 1.0


def test_sixteen_bit_pil_image_matches_the_same_pixels_as_a_file(tmp_path):
    rng = np.random.default_rng(0)
    grey16 = rng.integers(0, 65535, (32, 48), dtype=np.uint16)
    path = tmp_path / "g16.png"
    assert cv2.imwrite(str(path), grey16)
    from_file = load_image(path)
    pil = PIL.fromarray(grey16)
    assert pil.mode.startswith("I;16")
    from_pil = load_image(pil)
    assert from_pil.dtype == np.uint8 and from_pil.std() > 30  # not saturated to white
    assert np.array_equal(from_pil, from_file)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_apply_orientation_matches_pillow_exif_transpose(orientation):
    from PIL import ImageOps

    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    pil = PIL.fromarray(img)
    exif = PIL.Exif()
    exif[0x0112] = orientation
    pil.info["exif"] = exif.tobytes()
    pil.getexif()[0x0112] = orientation
    assert np.array_equal(apply_orientation(img, orientation), np.asarray(ImageOps.exif_transpose(pil)))


def test_variable_frame_rate_video_uses_the_containers_timestamps(tmp_path):
    av = pytest.importorskip("av")
    import fractions

    from rtatl_sdk.stream.video import iter_frames

    path = tmp_path / "vfr.mp4"
    box = av.open(str(path), "w")
    s = box.add_stream("mpeg4", rate=30)
    s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
    s.codec_context.time_base = s.time_base = fractions.Fraction(1, 1000)
    stamps, t = [], 0
    for i in range(40):  # 30 frames at ~30 fps, then 10 at 5 fps
        f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 6, np.uint8), format="bgr24")
        f.pts, f.time_base = t, fractions.Fraction(1, 1000)
        stamps.append(t / 1000)
        for pkt in s.encode(f):
            box.mux(pkt)
        t += 33 if i < 30 else 200
    for pkt in s.encode():
        box.mux(pkt)
    box.close()
    got = [fr.timestamp for fr in iter_frames(path)]
    assert len(got) == 40
    assert np.abs(np.array(got) - stamps).max() < 0.002  # index / average fps would be off by 0.1 s and more
