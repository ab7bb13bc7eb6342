"""Dataset readers, splits, configs and checkpoints on small hand-written files."""

import logging

import numpy as np
import pytest

pytest.importorskip("torch")


import pytest

from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.errors import InputError, RTATLError
from training.checkpoint import load_checkpoint, save_checkpoint
from training.config import load_config
from training.data import raw, splits
from training.flow import flip_flow

BP4D_HEADER = "0,1,2,4,5,6,7,9,10,11,12,13,14,15,16,17,18,19,20,22,23,24,27,28"


def write_bp4d(root, rows, subject="F001", task="T1", frames_on_disk=None, name_fmt="{:04d}"):
    d = root / "AUCoding" / "AU_OCC"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{subject}_{task}.csv").write_text("\n".join([BP4D_HEADER] + rows) + "\n")
    img = root / "images" / subject / task
    img.mkdir(parents=True, exist_ok=True)
    for f in frames_on_disk or []:
        (img / (name_fmt.format(f) + ".jpg")).write_bytes(b"jpeg")


def row(frame, values):
    vals = dict(zip(BP4D_HEADER.split(",")[1:], ["0"] * 23))
    vals.update({str(k): str(v) for k, v in values.items()})
    return ",".join([str(frame)] + list(vals.values()))


def test_bp4d_labels_with_unknowns_and_missing_images(tmp_path, caplog):
    rows = [row(643, {1: 1, 12: 9}), row(644, {2: 1}), row(645, {24: 1}), row(646, {})]
    write_bp4d(tmp_path, rows, frames_on_disk=[643, 644, 646])  # 645 has no image
    with caplog.at_level(logging.WARNING):
        (seq,) = raw.read_bp4d(tmp_path)
    assert seq.key == "F001_T1"
    assert seq.frames.tolist() == [643, 644, 646]
    aus = AU_SETS["BP4D"]
    assert seq.labels.shape == (3, 12)
    assert seq.labels[0, aus.index(1)] == 1 and seq.labels[0, aus.index(12)] == -1
    assert seq.labels[1, aus.index(2)] == 1 and seq.labels[2].sum() == 0
    assert seq.skipped == {"image file missing": 1}
    assert "1 of 4 labelled frames have no image" in caplog.text
    assert seq.images[0].name == "0643.jpg"
    assert seq.later_source(0, 3) == ("image", seq.images[2])  # frame 646 = 643 + 3
    assert seq.later_source(1, 3) is None  # 647 does not exist


@pytest.mark.parametrize("fmt", ["{}", "{:05d}"])
def test_bp4d_frame_name_paddings(tmp_path, fmt):
    write_bp4d(tmp_path, [row(7, {})], frames_on_disk=[7], name_fmt=fmt)
    (seq,) = raw.read_bp4d(tmp_path)
    assert seq.images[0].name == fmt.format(7) + ".jpg"


@pytest.mark.parametrize("bad_row,pattern", [
    (row(10, {4: 3}), r"F001_T1.csv:3: label 3 is not 0, 1 or 9"),
    (row(10, {4: "x"}), r"F001_T1.csv:3: non-integer"),
    ("10,1,0", r"F001_T1.csv:3: has 3 fields"),
    (row(9, {}), r"lists a frame number more than once"),
])
def test_bp4d_malformed_label_files_name_file_and_line(tmp_path, bad_row, pattern):
    write_bp4d(tmp_path, [row(9, {}), bad_row], frames_on_disk=[9, 10])
    with pytest.raises(InputError, match=pattern):
        raw.read_bp4d(tmp_path)


def test_bp4d_missing_au_column_and_not_a_bp4d_folder(tmp_path):
    d = tmp_path / "AUCoding" / "AU_OCC"
    d.mkdir(parents=True)
    (d / "F001_T1.csv").write_text("0,1,2\n5,0,1\n")
    with pytest.raises(InputError, match="has no column for AU 4"):
        raw.read_bp4d(tmp_path)
    with pytest.raises(InputError, match="is not a BP4D folder"):
        raw.read_bp4d(tmp_path / "elsewhere")


def write_disfa(root, subject="SN001", n=6, intensities=None):
    d = root / "ActionUnit_Labels" / subject
    d.mkdir(parents=True, exist_ok=True)
    for au in AU_SETS["DISFA"]:
        vals = (intensities or {}).get(au, [0] * n)
        (d / f"{subject}_au{au}.txt").write_text("".join(f"{k + 1},{v}\n" for k, v in enumerate(vals)))
    v = root / "Videos_LeftCamera"
    v.mkdir(parents=True, exist_ok=True)
    (v / f"LeftVideo{subject}_comp.avi").write_bytes(b"avi")


def test_disfa_one_based_frames_and_intensity_threshold(tmp_path):
    write_disfa(tmp_path, intensities={12: [0, 1, 2, 3, 5, 0], 25: [1, 1, 1, 2, 2, 2]})
    (seq,) = raw.read_disfa(tmp_path)
    aus = AU_SETS["DISFA"]
    assert seq.frames.tolist() == [1, 2, 3, 4, 5, 6]
    assert seq.labels[:, aus.index(12)].tolist() == [0, 0, 1, 1, 1, 0]  # positive = intensity > 1
    assert seq.labels[:, aus.index(25)].tolist() == [0, 0, 0, 1, 1, 1]
    assert seq.source(0) == ("video", seq.video, 0)  # label frame 1 = video frame 0
    assert seq.later_source(2, 3) == ("video", seq.video, 5)


@pytest.mark.parametrize("content,pattern", [
    ("1,0\n2,7\n", r"SN001_au1.txt:2: intensity 7 is outside 0-5"),
    ("1,0\n2;1\n", r"SN001_au1.txt:2: expected 'frame,intensity'"),
    ("1,0\n1,1\n", r"frame 1 is listed twice"),
    ("", r"has no label lines"),
])
def test_disfa_malformed_label_files(tmp_path, content, pattern):
    write_disfa(tmp_path, n=2)
    (tmp_path / "ActionUnit_Labels" / "SN001" / "SN001_au1.txt").write_text(content)
    with pytest.raises(InputError, match=pattern):
        raw.read_disfa(tmp_path)


def test_disfa_missing_files(tmp_path):
    write_disfa(tmp_path, n=3)
    (tmp_path / "ActionUnit_Labels" / "SN001" / "SN001_au26.txt").unlink()
    with pytest.raises(InputError, match="SN001_au26.txt: missing"):
        raw.read_disfa(tmp_path)
    write_disfa(tmp_path, n=3)
    (tmp_path / "ActionUnit_Labels" / "SN001" / "SN001_au9.txt").write_text("1,0\n2,0\n")
    with pytest.raises(InputError, match="lists other frames"):
        raw.read_disfa(tmp_path)
    write_disfa(tmp_path, n=3)
    (tmp_path / "Videos_LeftCamera" / "LeftVideoSN001_comp.avi").unlink()
    with pytest.raises(InputError, match="left-camera video"):
        raw.read_disfa(tmp_path)


def test_unlabelled_folder(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.jpg", "b.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"1")
    (seq,) = raw.read_image_folder(tmp_path, 12)
    assert sorted(p.name for p in seq.images) == ["b.png", "x.jpg"]
    assert seq.labels.shape == (2, 12) and (seq.labels == -1).all()
    assert seq.later_source(0, 3) is None  # unrelated stills: no flow target
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="contains no images"):
        raw.read_image_folder(tmp_path / "empty", 12)


def test_standard_splits(caplog):
    for ds, n in (("BP4D", 41), ("DISFA", 27)):
        seen = set()
        for fold in (1, 2, 3):
            train, test = splits.fold_subjects(ds, fold)
            assert not set(train) & set(test) and len(train) + len(test) == n
            seen |= set(test)
        assert len(seen) == n
    assert "F001" in splits.fold_subjects("BP4D", 1)[1] and "SN003" in splits.fold_subjects("DISFA", 3)[1]
    with caplog.at_level(logging.WARNING):
        train, test = splits.check_present("BP4D", 1, {"F001", "F003", "F004"})
    assert test == ["F001"] and train == ["F003", "F004"]
    assert "13 of 14 test subjects missing" in caplog.text
    with pytest.raises(InputError, match="missing from the data"):
        splits.check_present("BP4D", 1, {"F001", "F003"}, strict=True)
    with pytest.raises(InputError, match="none of the test subjects"):
        splits.check_present("BP4D", 1, {"F003"})
    with pytest.raises(InputError, match="fold"):
        splits.fold_subjects("BP4D", 4)


def test_flip_flow_mirrors_and_negates_x():
    f = np.zeros((2, 4, 5), np.float32)
    f[0, 1, 0], f[1, 1, 0] = 2.0, -1.0  # pixel (x=0, y=1) moves right by 2, up by 1
    g = flip_flow(f)
    assert g[0, 1, 4] == -2.0 and g[1, 1, 4] == -1.0 and np.count_nonzero(g) == 2
    assert np.array_equal(flip_flow(g), f)


def test_config_file_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  cache: /x\nrun:\n  seed: 3\n")
    cfg = load_config(p, ["optim.lr=1e-4", "model.variant=ofe", "data.fold=null"])
    assert cfg.optim.lr == 1e-4 and cfg.model.variant == "ofe" and cfg.data.fold is None and cfg.run.seed == 3
    with pytest.raises(InputError, match="variant"):
        load_config(p, ["model.variant=big"])
    with pytest.raises(InputError, match="section.key=value"):
        load_config(p, ["optim.lr"])
    with pytest.raises(InputError, match="nope"):
        load_config(p, ["optim.nope=1"])
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_checkpoint_errors(tmp_path):
    import torch

    good = tmp_path / "a.ckpt"
    save_checkpoint(good, {"step": 3})
    assert load_checkpoint(good)["step"] == 3
    data = good.read_bytes()
    (tmp_path / "trunc.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RTATLError, match="truncated or not a checkpoint"):
        load_checkpoint(tmp_path / "trunc.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(RTATLError, match="not an RTATL checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(RTATLError, match="no such file"):
        load_checkpoint(tmp_path / "none.ckpt")
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


@pytest.mark.media
def test_rtatl_prep_redoes_a_sequence_whose_labels_were_corrected(media, tmp_path):
    pytest.importorskip("torch")
    from training import prep
    from training.data import synthetic
    from training.data.cache import read_part
    from training.flow import FlowParams

    root = synthetic.make_bp4d(tmp_path / "bp4d", [media / "single_face.mp4"], subjects=("F001", "M001"), tasks=("T1",),
                               frames=3, drop_images=0)
    cache = tmp_path / "cache"
    fast = FlowParams(scale=0.5, warps=1, scales=1)
    assert prep.prepare("BP4D", root, cache, params=fast, with_flow=False, progress=False)["resumed"] == 0
    label = root / "AUCoding" / "AU_OCC" / "M001_T1.csv"
    rows = [r.split(",") for r in label.read_text().splitlines()]
    rows[1][1] = "1" if rows[1][1] == "0" else "0"  # AU1 of the first frame corrected
    label.write_text("\n".join(",".join(r) for r in rows) + "\n")
    totals = prep.prepare("BP4D", root, cache, params=fast, with_flow=False, progress=False)
    assert totals["resumed"] == 1 and totals["frames"] == 3  # F001 reused, M001 redone
    assert read_part(cache / "parts" / "M001_T1.npz").labels[0, 0] == int(rows[1][1])
