"""The training and export commands refuse bad input in one line before doing any work."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rtatl_sdk.errors import CheckpointError, InputError, ModelCardError
from tests.helpers import REPO

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kw,needle", [({"scale": 0.0}, "--flow-scale"), ({"warps": 0}, "warps"),
                                       ({"scales": 0}, "scales"), ({"tau": float("nan")}, "tau")])
def test_flow_parameters_that_make_no_flow_are_refused(kw, needle):
    from training.flow import FlowParams

    with pytest.raises(InputError, match=needle):
        FlowParams(**kw)


def test_prep_refuses_a_file_as_its_cache_and_zero_warps(tmp_path, capsys):
    from training.prep import main

    (tmp_path / "cache").write_text("x")
    assert main(["unlabelled", str(tmp_path), str(tmp_path / "cache")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["unlabelled", str(tmp_path), str(tmp_path / "c2"), "--flow-warps", "0"]) == 2
    assert "warps" in capsys.readouterr().err and not (tmp_path / "c2").exists()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from rtatl_sdk.contract.au import AU_SETS
    from training.checkpoint import write_initial_checkpoint
    from training.config import TrainConfig

    d = tmp_path_factory.mktemp("ck")
    cfg = TrainConfig.model_validate({"data": {"cache": "-"}, "model": {"d": 16, "heads": 2, "ff": 16, "roi_cells": 2,
                                                                       "work_size": 64, "g_width": 8, "dc_width": 4,
                                                                       "flow_width": 4}})
    return write_initial_checkpoint(d / "init.ckpt", cfg, AU_SETS["BP4D"])


def test_eval_refuses_a_folder_as_json_and_cuda_without_cuda_before_evaluating(ckpt, tmp_path, capsys):
    from training.evaluate import main

    assert main(["--ckpt", str(ckpt), "--cache", str(tmp_path / "none"), "--json", str(tmp_path)]) == 2
    assert "--json" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["--ckpt", str(ckpt), "--cache", str(tmp_path / "none"), "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_eval_names_a_checkpoint_without_its_configuration(ckpt, tmp_path, capsys):
    from training.checkpoint import load_checkpoint, save_checkpoint
    from training.evaluate import main

    state = load_checkpoint(ckpt)
    del state["config"]
    save_checkpoint(tmp_path / "bare.ckpt", state)
    for extra in ([], ["--fold", "1"]):
        assert main(["--ckpt", str(tmp_path / "bare.ckpt"), "--cache", str(tmp_path), *extra]) == 2
        assert "no training configuration" in capsys.readouterr().err


def test_export_refuses_a_file_as_its_output_folder(ckpt, tmp_path, capsys):
    from export.cli import main

    (tmp_path / "out").write_text("mine")
    assert main(["--ckpt", str(ckpt), "--out", str(tmp_path / "out")]) == 2
    assert "not a folder" in capsys.readouterr().err and (tmp_path / "out").read_text() == "mine"


def test_bp4d_labels_in_another_encoding_are_named(tmp_path):
    from training.data.raw import read_bp4d_labels

    p = tmp_path / "F001_T1.csv"
    p.write_bytes("frame,1,2\n1,0,1\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-8"):
        read_bp4d_labels(p)


def test_a_card_nested_thousands_deep_is_refused_not_a_crash():
    from rtatl_sdk.contract.card import ModelCard

    with pytest.raises(ModelCardError, match="nested"):
        ModelCard.from_json("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelCardError, match="more than a card"):
        ModelCard.from_json(json.dumps({"x": "a" * 2_000_000}))


def test_default_recipe_names_a_bad_setting_as_its_option(tmp_path, capsys):
    """The typed recipe's ranges, said in the command line's words (the paths keep their own)."""
    from training.recipes import default_model

    (tmp_path / "my_faces").mkdir()
    base = ["--faces", str(tmp_path / "my_faces"), "--media", str(tmp_path), "--out", str(tmp_path / "run_a")]
    for argv, said in ((["--steps", "0"], "--steps=0: Input should be greater than or equal to 1"),
                       (["--neutral-rate", "1.5"], "--neutral-rate=1.5: Input should be less than 1"),
                       (["--neutral-rate-au", "AU99=0.1"], "--neutral-rate-au AU99=0.1: AU99 is not in the recipe's AU set"),
                       (["--aus", "nope"], "--aus='NOPE'")):
        assert default_model.main(base + argv) == 2
        err = capsys.readouterr().err
        assert said in err and "Traceback" not in err, err
    assert not (tmp_path / "run_a").exists()  # refused before anything was written


def test_default_recipe_refuses_another_faces_folder_for_built_data(tmp_path, capsys):
    from training.recipes import default_model

    out = tmp_path / "run"
    out.mkdir()
    (out / "data_summary.json").write_text(json.dumps({"faces_folder": str((tmp_path / "a").resolve()),
                                                       "cap_per_emotion": None}))
    (tmp_path / "b").mkdir()
    assert default_model.main(["--faces", str(tmp_path / "b"), "--media", str(tmp_path), "--out", str(out)]) == 2
    assert "other settings" in capsys.readouterr().err


def test_dataframe_of_a_stream_without_faces_keeps_the_au_columns_and_nan_is_never_written():
    from types import SimpleNamespace

    from rtatl_sdk import to_dataframe
    from rtatl_sdk.io.rows import face_row
    from rtatl_sdk.results import AUResult, Box, FaceAUs, FrameResult

    det = SimpleNamespace(aus=["AU01", "AU12"], has_intensity=True, emotion_names=None)
    df = to_dataframe([FrameResult(index=0, timestamp=0.0, faces=[])], detector=det)
    assert {"AU01_p", "AU12_r", "AU12_c"} <= set(df.columns) and len(df) == 0
    face = FaceAUs(index=0, box=Box(x=0, y=0, w=1, h=1, score=1), landmarks=np.zeros((68, 2)),
                   aus={"AU01": AUResult(probability=0.5, present=True, threshold=0.5, intensity=float("nan"))})
    assert face_row("x", 0, 0.0, face)["AU01_r"] == ""


def test_cluster_exit_status_counts_frames_without_a_picture_as_a_single_run_does(monkeypatch, tmp_path, capsys):
    from types import SimpleNamespace

    from rtatl_sdk.apps import cli, cluster

    entries = {"a.mp4": {"status": "done", "output": "a.csv", "warnings": ["3 frames without a picture"]},
               "b.jpg": {"status": "done", "output": "b.csv"}}
    monkeypatch.setattr(cluster, "process_archive", lambda *a, **k: entries)
    args = SimpleNamespace(cluster="local", inputs=[], out_dir=str(tmp_path), model=None, max_frames=None, workers=1,
                           quiet=True)
    assert cli.run_cluster(args, None) == 1
    assert "3 frames without a picture" in capsys.readouterr().err
    del entries["a.mp4"]["warnings"]
    assert cli.run_cluster(args, None) == 0


def test_a_checkpoint_that_would_run_code_is_refused_before_any_of_it_runs(tmp_path):
    torch = pytest.importorskip("torch")
    from training.checkpoint import load_checkpoint, save_checkpoint

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"format": "rtatl-checkpoint-v1", "model": {}, "x": Payload()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="refused: it holds more than tensors and plain data"):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
    # old checkpoints keep loading: tensors, plain data and numpy values (older recipes stored those)
    save_checkpoint(tmp_path / "ok.ckpt", {"model": {"w": torch.ones(2)}, "metrics": {"auc": np.float64(0.7)},
                                           "thresholds": np.array([0.4, 0.6]), "aus": [1, 2]})
    state = load_checkpoint(tmp_path / "ok.ckpt")
    assert float(state["metrics"]["auc"]) == 0.7 and state["thresholds"].tolist() == [0.4, 0.6]


@pytest.mark.parametrize("tool", ["export.cli", "training.evaluate"])
def test_the_checkpoint_readers_refuse_such_a_file_in_one_line(tool, tmp_path):
    torch = pytest.importorskip("torch")

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"format": "rtatl-checkpoint-v1", "x": Payload()}, tmp_path / "evil.ckpt")
    argv = {"export.cli": ["--ckpt", str(tmp_path / "evil.ckpt"), "--out", str(tmp_path / "out")],
            "training.evaluate": ["--ckpt", str(tmp_path / "evil.ckpt"), "--cache", str(tmp_path)]}[tool]
    res = subprocess.run([sys.executable, "-m", tool, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert "refused" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.parametrize("override,needle", [("optim.batch_size=0", "optim.batch_size=0"), ("optim.lr=-1", "optim.lr=-1"),
                                             ("model.heads=3", "must divide model.d=128"),
                                             ("run.log_every=0", "run.log_every=0"), ("optim.steps=-5", "optim.steps=-5")])
def test_rtatl_train_refuses_bad_settings_in_one_line(override, needle, tmp_path):
    pytest.importorskip("torch")
    res = subprocess.run([sys.executable, "-m", "training.train", "--config", str(REPO / "training/configs/smoke.yaml"),
                          override, f"run.out={tmp_path / 'run'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, (res.stdout, res.stderr)
    err = res.stderr.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
