"""Preprocessing and training end to end on synthetic BP4D-layout data made from real frames."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtatl_sdk.contract import geometry as g
from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.errors import RTATLError
from tests.helpers import REPO, wait_for
from training import evaluate, prep, train
from training.config import load_config
from training.data import synthetic
from training.data.dataset import AUDataset
from training.flow import FlowParams, flip_flow

pytestmark = pytest.mark.media
FAST_FLOW = FlowParams(scale=0.5, warps=3, scales=3)


@pytest.fixture(scope="module")
def caches(media, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    videos = [media / "single_face.mp4", media / "WolfgangLanger_Pexels.mp4"]
    bp4d = synthetic.make_bp4d(root / "bp4d", videos, frames=6)
    # one labelled frame whose JPEG is corrupt: must be skipped and counted, not mislabelled
    victim = sorted((bp4d / "images" / "M001" / "T1").glob("*.jpg"))[0]
    victim.write_bytes(b"\xff\xd8\xff garbage")
    # one labelled frame that decodes but shows no face: evaluation counts it as predicting no AU
    import cv2

    blank = sorted((bp4d / "images" / "F003" / "T1").glob("*.jpg"))[1]
    cv2.imwrite(str(blank), np.full((360, 640, 3), 128, np.uint8))
    unl = synthetic.make_unlabelled(root / "unl", videos, n=8)
    totals = prep.prepare("BP4D", bp4d, root / "cache_bp4d", workers=2, params=FAST_FLOW, progress=False)
    utotals = prep.prepare("unlabelled", unl, root / "cache_unl", workers=1, with_flow=False, progress=False)
    return {"root": root, "bp4d": root / "cache_bp4d", "unl": root / "cache_unl", "totals": totals, "utotals": utotals}


def test_prep_counts_skips_and_resumes(caches):
    t = caches["totals"]
    assert t["sequences"] == 12 and t["failed"] == 0
    assert t["skipped"] == 3  # the corrupt JPEG, the labelled frame without an image file, the grey frame
    assert t["frames"] == 12 * 6 - 3
    parts = sorted((caches["bp4d"] / "parts").glob("*.npz"))
    skipped = {}
    for p in parts:
        with np.load(p) as d:
            for k, v in json.loads(str(d["skipped"])).items():
                skipped[k] = skipped.get(k, 0) + v
            assert d["landmarks"].shape[1:] == (68, 2) and d["has_flow"].any()
    assert skipped == {"undecodable": 1, "image file missing": 1, "no face": 1}
    with np.load(caches["bp4d"] / "parts" / "F003_T1.npz") as d:  # the frame without a face keeps its labels
        assert d["noface_frames"].shape == (1,) and d["noface_labels"].shape == (1, d["labels"].shape[1])
    again = prep.prepare("BP4D", caches["root"] / "bp4d", caches["bp4d"], workers=1, params=FAST_FLOW, progress=False)
    assert again["resumed"] == 12 and again["frames"] == 0
    with pytest.raises(RTATLError, match="other settings"):
        prep.prepare("BP4D", caches["root"] / "bp4d", caches["bp4d"], params=FlowParams(), progress=False)


def test_cached_faces_are_aligned(caches):
    ds = AUDataset(caches["bp4d"], train=False)
    idx = ds.index
    eyes = np.stack([g.five_points(idx.landmarks[i])[:2] for i in range(len(idx))])
    assert np.abs(eyes - g.TEMPLATE_5[:2]).max() < 8.0  # every cached face sits on the template


def test_flip_is_consistent_across_image_centres_flow_and_labels(caches, monkeypatch):
    ds = AUDataset(caches["bp4d"], train=True)
    i = int(np.flatnonzero(ds.index.has_flow)[0])
    monkeypatch.setattr(ds, "augmentation", lambda i, epoch=None: (3, 5, False))
    a = ds[i]
    monkeypatch.setattr(ds, "augmentation", lambda i, epoch=None: (3, 5, True))
    b = ds[i]
    assert np.allclose(b["image"], a["image"][:, :, ::-1])
    assert np.allclose(b["flow"], flip_flow(a["flow"]))
    assert np.array_equal(a["labels"], b["labels"])
    aus = AU_SETS["BP4D"]
    assert np.allclose(b["centres"], g.flip_centres(a["centres"], aus, g.CROP_SIZE), atol=1e-4)


def test_a_sample_asked_for_with_its_epoch_is_that_epochs_sample(caches):
    """``ds[(epoch, i)]`` (how the batch stream asks) equals ``ds[i]`` after ``set_epoch(epoch)``,
    augmentation included, whatever epoch the dataset is at."""
    ds = AUDataset(caches["bp4d"], train=True)
    for epoch, i in ((0, 1), (3, 1), (7, 4)):
        ds.set_epoch(epoch)
        want = ds[i]
        ds.set_epoch(99)
        got = ds[(epoch, i)]
        assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)
    ds.set_epoch(3)
    assert not np.array_equal(ds[1]["image"], ds[(0, 1)]["image"])  # the epoch does change the sample


class _Keys:
    """A dataset whose samples are the keys they were asked for."""

    def __init__(self, n):
        self.n, self.epoch = n, 0

    def __len__(self):
        return self.n

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, key):
        epoch, i = key if isinstance(key, tuple) else (self.epoch, key)
        return {"key": np.array([epoch, i])}


def test_the_batch_stream_serves_every_epoch_from_one_loader_and_any_step_alike():
    """Ten samples in batches of four: two steps an epoch. A sequential run of four epochs uses
    one loader (one set of worker processes; it was one per epoch), and each step's batch is the
    one a fresh stream gives for that step, with the same and with no workers."""
    seq = train.BatchStream(_Keys(10), 4, seed=5, workers=2)
    got = [seq.get(s)["key"].numpy() for s in range(8)]
    assert seq.loaders_made == 1
    for s in (0, 1, 2, 5, 7):
        fresh = train.BatchStream(_Keys(10), 4, seed=5, workers=0).get(s)["key"].numpy()
        assert np.array_equal(got[s], fresh)
        epoch, offset = divmod(s, 2)
        assert (got[s][:, 0] == epoch).all() and got[s][:, 1].tolist() == seq._batches(epoch)[offset]
    assert seq.get(3)["key"].numpy().tolist() == got[3].tolist() and seq.loaders_made == 2  # a jump: a new loader


def smoke_cfg(caches, out, **over):
    items = [f"data.cache={caches['bp4d']}", f"data.unlabelled_cache={caches['unl']}", f"run.out={out}",
             "optim.batch_size=4", "optim.unlabelled_batch_size=2", "run.workers=0", "run.log_every=1"]
    items += [f"{k}={v}" for k, v in over.items()]
    return load_config(train.Path("training/configs/smoke.yaml"), items)


def test_smoke_train_then_eval_cli(caches, tmp_path, capsys):
    out = tmp_path / "run"
    rc = train.main(["--config", "training/configs/smoke.yaml", f"data.cache={caches['bp4d']}",
                     f"data.unlabelled_cache={caches['unl']}", f"run.out={out}", "optim.steps=12", "run.log_every=1", "--eval"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| AU | 01 | 02 | 04 | 06 | 07 | 10 | 12 | 14 | 15 | 17 | 23 | 24 | Avg. |" in text
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert len(log) == 12 and {"sup", "G", "rec", "flow", "D", "C"} <= set(log[-1])
    assert list((out / "tb").glob("events.*"))
    rc = evaluate.main(["--ckpt", str(out / "last.ckpt"), "--cache", str(caches["bp4d"]), "--fold", "1",
                        "--json", str(tmp_path / "r.json")])
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["f1"]) == {f"AU{a:02d}" for a in AU_SETS["BP4D"]}
    assert report["subjects"] == ["F001", "M001"]
    assert report["frames"] == 2 * 2 * 6 - 2  # F001_T1 lacks one image file, M001_T1 has a corrupt one
    assert all(0.0 <= v <= 1.0 for v in report["f1"].values())


def test_three_folds_table_counts_frames_without_a_face(caches, tmp_path, capsys):
    from training.checkpoint import write_initial_checkpoint
    from training.data.dataset import CacheIndex

    for k in (1, 2, 3):
        write_initial_checkpoint(tmp_path / f"fold{k}" / "last.ckpt", smoke_cfg(caches, tmp_path, **{"data.fold": k}), AU_SETS["BP4D"], seed=k)
    rc = evaluate.main(["--ckpt", str(tmp_path / "fold{fold}" / "last.ckpt"), "--cache", str(caches["bp4d"]),
                        "--folds", "1", "2", "3", "--json", str(tmp_path / "t.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| F1 (%) | 01 | 02 | 04 | 06 | 07 | 10 | 12 | 14 | 15 | 17 | 23 | 24 | Avg. |" in text
    assert all(f"| fold {k} |" in text for k in (1, 2, 3)) and "| **mean** |" in text
    res = json.loads((tmp_path / "t.json").read_text())
    folds = res["folds"]
    assert [folds[k]["subjects"] for k in "123"] == [["F001", "M001"], ["F003", "M002"], ["F004", "M003"]]
    assert [folds[k]["frames_without_face"] for k in "123"] == [0, 1, 0]  # the grey F003 frame
    with_face = len(CacheIndex(caches["bp4d"], ["F003", "M002"]).frames)
    assert folds["2"]["frames"] == with_face + 1
    for au, v in res["f1"].items():
        assert v == pytest.approx(np.mean([folds[k]["f1"][au] for k in "123"]))
    assert "without a face" in text
    assert evaluate.main(["--ckpt", str(tmp_path / "last.ckpt"), "--cache", str(caches["bp4d"]), "--folds", "1"]) == 2


def test_resume_continues_with_identical_losses(caches, tmp_path):
    full = train.train(smoke_cfg(caches, tmp_path / "a", **{"optim.steps": 6}), progress=False)["history"]
    train.train(smoke_cfg(caches, tmp_path / "b", **{"optim.steps": 3}), progress=False)
    resumed = train.train(smoke_cfg(caches, tmp_path / "b", **{"optim.steps": 6}), progress=False)["history"]
    assert len(resumed) == 3
    assert resumed == full[3:]  # bit-identical loss terms


def test_non_finite_loss_stops_or_skips(caches, tmp_path, monkeypatch, caplog):
    from training import losses

    real = losses.supervised
    monkeypatch.setattr(losses, "supervised", lambda *a: real(*a) * float("nan"))
    with pytest.raises(RTATLError, match="step 0: non-finite loss"):
        train.train(smoke_cfg(caches, tmp_path / "s", **{"optim.steps": 2}), progress=False)
    with caplog.at_level(logging.WARNING):
        res = train.train(smoke_cfg(caches, tmp_path / "k", **{"optim.steps": 2, "run.nonfinite": "skip"}), progress=False)
    assert res["skipped_steps"] == 2 and "step skipped" in caplog.text


@pytest.mark.slow
def test_two_process_gloo_ddp(caches, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "training.train",
           "--config", "training/configs/smoke.yaml", f"data.cache={caches['bp4d']}", f"data.unlabelled_cache={caches['unl']}",
           f"run.out={tmp_path / 'ddp'}", "optim.steps=3", "optim.batch_size=2", "optim.unlabelled_batch_size=1",
           "run.threads=1", "run.workers=0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count('"steps": 3') == 2  # both ranks finished
    assert (tmp_path / "ddp" / "last.ckpt").is_file()


def _two_nodes(caches, outs, steps: int, port: int):
    """Two torchrun launchers on this machine, one process each, as two nodes of one job would be
    started (c10d rendezvous on the first node's address), each with its own ``run.out``."""
    procs = []
    for out in outs:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "rtatl-test",
               "-m", "training.train", "--config", "training/configs/smoke.yaml", f"data.cache={caches['bp4d']}",
               f"data.unlabelled_cache={caches['unl']}", f"run.out={out}", f"optim.steps={steps}", "optim.batch_size=2",
               "optim.unlabelled_batch_size=1", "run.threads=1", "run.workers=0"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return [(p.wait(timeout=600), *p.communicate()) for p in procs]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_and_resume_only_from_a_shared_run_folder(caches, tmp_path):
    shared = tmp_path / "shared"
    res = _two_nodes(caches, [shared, shared], 2, _free_port())
    assert [r[0] for r in res] == [0, 0], [r[2][-2000:] for r in res]
    assert sum(r[1].count('"steps": 2') for r in res) == 2  # both ranks finished
    res = _two_nodes(caches, [shared, shared], 3, _free_port())  # resumed from step 2 on both nodes
    assert [r[0] for r in res] == [0, 0], [r[2][-2000:] for r in res]
    # a node that does not see the run folder would start from step 0: refused on every rank
    res = _two_nodes(caches, [shared, tmp_path / "elsewhere"], 4, _free_port())
    assert all(r[0] != 0 for r in res)
    assert any("must be one folder that every node sees" in r[2] for r in res)


@pytest.mark.slow
def test_prep_and_train_survive_sigkill(caches, tmp_path):
    import signal

    cache = tmp_path / "cache"
    prep_cmd = [sys.executable, "-m", "training.prep", "BP4D", str(caches["root"] / "bp4d"), str(cache), "--workers", "1",
                "--flow-scale", "0.5", "--flow-warps", "3", "--flow-scales", "3"]
    proc = subprocess.Popen(prep_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: len(list((cache / "parts").glob("*.npz"))) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((cache / "parts").glob("*.npz")))
    res = subprocess.run(prep_cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    totals = json.loads(res.stdout.strip().splitlines()[-1])
    assert totals["resumed"] == done_before and len(list((cache / "parts").glob("*.npz"))) == 12
    assert AUDataset(cache, train=False).__len__() == caches["totals"]["frames"]

    out = tmp_path / "run"
    train_cmd = [sys.executable, "-m", "training.train", "--config", "training/configs/smoke.yaml", f"data.cache={cache}",
                 f"data.unlabelled_cache={caches['unl']}", f"run.out={out}", "optim.steps=10", "run.ckpt_every=2",
                 "optim.batch_size=4", "optim.unlabelled_batch_size=2"]
    proc = subprocess.Popen(train_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: (out / "last.ckpt").is_file(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from training.checkpoint import load_checkpoint

    killed_at = load_checkpoint(out / "last.ckpt")["step"]  # the checkpoint on disk is whole
    res = subprocess.run(train_cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resumed from {out / 'last.ckpt'} at step {killed_at}" in res.stderr
    assert load_checkpoint(out / "last.ckpt")["step"] == 10


def test_colour_jitter_is_seeded_and_train_only(caches):
    plain = AUDataset(caches["bp4d"], train=True, seed=3)
    jit = AUDataset(caches["bp4d"], train=True, seed=3, colour_jitter=0.3)
    test = AUDataset(caches["bp4d"], train=False, colour_jitter=0.3)
    a, b, b2 = plain[0], jit[0], jit[0]
    assert np.array_equal(b["image"], b2["image"])  # same (seed, epoch, index): same jitter
    assert not np.allclose(a["image"], b["image"]) and np.allclose(a["centres"], b["centres"])
    assert np.array_equal(test[0]["image"], AUDataset(caches["bp4d"], train=False)[0]["image"])


@pytest.mark.slow
def test_a_nan_on_one_rank_is_skipped_by_every_rank(caches, tmp_path):
    driver = tmp_path / "nan_on_rank1.py"
    driver.write_text(
        "import os, sys\n"
        "from training import train\n"
        "from training import losses\n"
        "real = losses.supervised\n"
        "def sup(*a, **k):\n"
        "    v = real(*a, **k)\n"
        "    return v * float('nan') if os.environ['RANK'] == '1' else v\n"
        "losses.supervised = sup\n"
        "sys.exit(train.main(sys.argv[1:]))\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(driver),
           "--config", "training/configs/smoke.yaml", f"data.cache={caches['bp4d']}", f"data.unlabelled_cache={caches['unl']}",
           f"run.out={tmp_path / 'ddp'}", "optim.steps=3", "optim.batch_size=2", "optim.unlabelled_batch_size=1",
           "run.threads=1", "run.workers=0", "run.nonfinite=skip"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)  # a desync hangs
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count('"skipped_steps": 3') == 2  # both ranks skipped every step, together


def test_training_on_n_drawn_subjects_is_seeded_and_refuses_too_many(caches, tmp_path):
    from rtatl_sdk.errors import TrainingError

    cfg = smoke_cfg(caches, tmp_path / "n", **{"data.train_subjects": 2, "data.subjects_seed": 5})
    a = train.Trainer(cfg, progress=False)
    b = train.Trainer(cfg, progress=False)
    assert a.train_subjects == b.train_subjects and len(a.train_subjects) == 2
    assert set(a.train_subjects) <= {"F003", "M002", "F004", "M003"}  # fold 1 trains on parts 2 and 3
    assert set(a.labelled.index.subjects) == set(a.train_subjects)
    other = {tuple(train.draw_subjects(["F003", "M002", "F004", "M003"], 2, s)) for s in range(20)}
    assert len(other) > 1  # the seed chooses
    with pytest.raises(TrainingError, match="only 4 training subjects"):
        train.Trainer(smoke_cfg(caches, tmp_path / "m", **{"data.train_subjects": 5}), progress=False)


def test_figure_command_writes_the_three_pngs(caches, tmp_path, capsys):
    import cv2

    from training import figures

    out = tmp_path / "run"
    train.train(smoke_cfg(caches, out, **{"optim.steps": 2}), progress=False)
    assert figures.main(["--ckpt", str(out / "last.ckpt"), "--cache", str(caches["bp4d"]), "--out", str(tmp_path / "fig"),
                         "--frames", "4"]) == 0
    shapes = {name: cv2.imread(str(tmp_path / "fig" / name)).shape for name in ("flow.png", "inpainting.png", "au_indicators.png")}
    assert shapes["inpainting.png"][1] == 7 * 192 and shapes["inpainting.png"][0] == 28 + 4 * 192  # 4 frames x 7 tiles
    assert shapes["flow.png"][1] == 3 * 192 and shapes["au_indicators.png"][:2] == (13 * 40, 13 * 40)
    ind = cv2.imread(str(tmp_path / "fig" / "au_indicators.png"))
    assert (ind[40:80, 40:80] == [0, 0, 255]).all(-1).mean() > 0.5  # the diagonal (similarity 1) is red
    backbone = tmp_path / "bb"
    train.train(smoke_cfg(caches, backbone, **{"optim.steps": 1, "model.variant": "backbone"}), progress=False)
    assert figures.main(["--ckpt", str(backbone / "last.ckpt"), "--cache", str(caches["bp4d"]), "--out", str(tmp_path / "f2")]) == 0
    assert "flow.png: skipped" in capsys.readouterr().out and (tmp_path / "f2" / "au_indicators.png").is_file()


def test_a_table1_baseline_trains_through_the_trainer_with_unlabelled_images(caches, tmp_path):
    res = train.train(smoke_cfg(caches, tmp_path / "rot", **{"optim.steps": 2, "model.variant": "rotation",
                                                           "model.relation": "gcn"}), progress=False)
    assert len(res["history"]) == 2 and all("ssl" in h for h in res["history"])
    from training.checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(tmp_path / "rot" / "last.ckpt")
    a = model.backbone.transformer.adjacency
    assert not torch.equal(a, torch.eye(len(a)))  # the co-occurrence graph of the training labels, saved


def test_a_label_fraction_keeps_a_seeded_share_of_the_labelled_frames(caches, tmp_path):
    full = train.Trainer(smoke_cfg(caches, tmp_path / "all"), progress=False).labelled.index
    cfg = smoke_cfg(caches, tmp_path / "lf", **{"data.label_fraction": 0.3, "data.subjects_seed": 2})
    a, b = train.Trainer(cfg, progress=False), train.Trainer(cfg, progress=False)
    ia, ib = a.labelled.index, b.labelled.index
    assert len(ia) == round(0.3 * len(full)) and np.array_equal(ia.frames, ib.frames) and np.array_equal(ia.keys, ib.keys)
    rows = {(k, f): i for i, (k, f) in enumerate(zip(full.keys, full.frames))}
    src = [rows[(k, f)] for k, f in zip(ia.keys, ia.frames)]  # the kept frames keep their own labels and landmarks
    assert np.array_equal(ia.labels, full.labels[src]) and np.array_equal(ia.landmarks, full.landmarks[src])
    other = train.Trainer(smoke_cfg(caches, tmp_path / "lf3", **{"data.label_fraction": 0.3, "data.subjects_seed": 3}),
                          progress=False).labelled.index
    assert not np.array_equal(other.frames, ia.frames) or not np.array_equal(other.keys, ia.keys)  # another seed, another draw
    assert len(a.streams[-1].ds) == len(train.Trainer(smoke_cfg(caches, tmp_path / "u"), progress=False).streams[-1].ds)
