"""The intensity head: trained on DISFA's 0-5 codes, scored by rtatl-eval (ICC(3,1), Pearson, MAE),
exported as a second named output and read by the SDK as AUxx_r."""

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.helpers import REPO  # noqa: E402


def test_icc31_matches_shrout_and_fleiss_on_their_worked_numbers():
    from training.evaluate import icc31, intensity_scores

    # Shrout & Fleiss (1979) Table 2, judges 1 and 3 of their six targets: ICC(3,1) by hand
    a = np.array([9, 6, 8, 7, 10, 6], float)
    b = np.array([5, 3, 6, 2, 6, 4], float)
    x = np.stack([a, b], 1)
    n, k = x.shape
    ms_r = k * ((x.mean(1) - x.mean()) ** 2).sum() / (n - 1)
    ms_e = ((x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()) ** 2).sum() / ((n - 1) * (k - 1))
    assert icc31(a, b) == pytest.approx((ms_r - ms_e) / (ms_r + ms_e))
    assert icc31(a, a + 3) == pytest.approx(1.0)  # consistency: a constant offset does not count
    s = intensity_scores(np.stack([a, a], 1), np.stack([b, np.full(6, -1.0)], 1))
    assert s[0]["n"] == 6 and s[1]["n"] == 0 and s[0]["mae"] == pytest.approx(np.abs(a - b).mean())


def test_the_intensity_loss_counts_only_known_kept_intensities():
    from training import losses

    pred = torch.tensor([[1.0, 2.0], [3.0, 0.0]], requires_grad=True)
    target = torch.tensor([[2.0, -1.0], [3.0, 5.0]])
    mask = torch.tensor([[True, True], [True, False]])
    loss = losses.intensity(pred, target, mask)
    assert float(loss.detach()) == pytest.approx((1.0 + 0.0) / 2)  # (1-2)^2 and (3-3)^2; unknown and masked left out
    loss.backward()
    assert pred.grad[0, 1] == 0 and pred.grad[1, 1] == 0 and pred.grad[0, 0] != 0


@pytest.fixture(scope="module")
def disfa_run(media, tmp_path_factory):
    from training import prep
    from training.data import synthetic

    d = tmp_path_factory.mktemp("disfa")
    root = synthetic.make_disfa(d / "raw", [media / "single_face.mp4"], subjects=("SN001", "SN002"), frames=8)
    prep.prepare("DISFA", root, d / "cache", with_flow=False, progress=False)
    from training.config import load_config
    from training.train import train

    cfg = load_config(REPO / "training" / "configs" / "smoke.yaml", [
        f"data.cache={d / 'cache'}", "data.dataset=DISFA", "data.fold=null", "data.unlabelled_cache=null",
        "model.variant=backbone", "model.intensity=true", "optim.steps=3", "optim.batch_size=4",
        f"run.out={d / 'run'}", "run.log_every=1"])
    res = train(cfg, progress=False)
    return d, res


def test_disfa_intensities_reach_the_cache_and_train_the_head(disfa_run):
    from training.data.dataset import CacheIndex

    d, res = disfa_run
    idx = CacheIndex(d / "cache")
    assert idx.intensities.shape == idx.labels.shape and idx.intensities.max() >= 2
    assert ((idx.intensities > 1) == (idx.labels == 1)).all()  # positive = intensity > 1 (sec. 4.1)
    assert all("int" in h and np.isfinite(h["int"]) for h in res["history"])


def test_rtatl_eval_reports_icc_pearson_and_mae_per_au(disfa_run):
    from training.evaluate import evaluate_checkpoint, format_table

    d, res = disfa_run
    rep = evaluate_checkpoint(res["checkpoint"], d / "cache", None)
    assert set(rep["icc"]) == set(rep["aus"]) == set(rep["mae"]) == set(rep["pearson"])
    assert all(0 <= v <= 5 for v in rep["mae"].values()) and -1 <= rep["icc_mean"] <= 1
    table = format_table(rep)
    assert "ICC(3,1)" in table and "MAE" in table


@pytest.mark.media
def test_an_exported_intensity_model_gives_auxx_r_through_the_sdk(disfa_run, media, tmp_path):
    import onnx

    from export import export_model
    from rtatl_sdk import AUDetector
    from rtatl_sdk.apps.cli import main

    _, res = disfa_run
    export_model(res["checkpoint"], tmp_path / "m")
    model = tmp_path / "m" / "model.onnx"
    assert [o.name for o in onnx.load(str(model)).graph.output] == ["logits", "intensity"]
    with AUDetector(model) as det:
        assert det.has_intensity and "DISFA" in det.card.intensity_scale
        face = det.detect(media / "single_face.jpg")[0]
        assert all(r.intensity is not None and 0 <= r.intensity <= 5 for r in face.aus.values())
    out = tmp_path / "r.csv"
    assert main([str(media / "single_face.jpg"), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    row = next(csv.DictReader(out.open(newline="")))
    assert 0 <= float(row["AU12_r"]) <= 5 and row["AU12_c"] in ("0", "1")
    header = list(row)
    assert header.index("AU26_p") < header.index("AU01_r") < header.index("AU01_c")  # OpenFace: _r before _c
    assert json.loads(det.card.to_json())["outputs"]["intensity"].startswith("float32")
