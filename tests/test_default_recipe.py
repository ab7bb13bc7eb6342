"""The default model's recipe: corpus reading, targets, measures, and a tiny end-to-end run."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rtatl_sdk.contract.au import AU_SETS
from rtatl_sdk.errors import InputError
from tests.helpers import REPO
from training.recipes import corpus, measures, targets

AUS = AU_SETS["BP4D"]


def faces_dir() -> Path:
    env = os.environ.get("RTATL_FACES")
    return Path(env) if env else REPO.parent / "shared" / "faces"


# ---------------------------------------------------------------- corpus
def test_corpus_reader_takes_identities_and_emotions_and_names_bad_rows(tmp_path):
    import cv2

    img = np.full((64, 64, 3), 128, np.uint8)
    (tmp_path / "set").mkdir()
    for name in ("a_0001.jpg", "a_0002.jpg", "b_0001.jpg", "loose.png"):
        cv2.imwrite(str(tmp_path / "set" / name), img)
    (tmp_path / "set" / "labels.csv").write_text(
        "image,identity,emotion\na_0001.jpg,A,happiness\na_0002.jpg,A,\nb_0001.jpg,B,Neutral\ngone.jpg,C,anger\n")
    recs, counts = corpus.read_corpus(tmp_path)
    by = {r.path.name: r for r in recs}
    assert (by["a_0001.jpg"].identity, by["a_0001.jpg"].emotion) == ("set/A", "happiness")
    assert by["a_0002.jpg"].emotion == "" and by["b_0001.jpg"].emotion == "neutral"
    assert by["loose.png"].identity == "set/loose"  # no row: its own identity, nothing dropped
    assert counts == {"images": 4, "identities": 3, "with_emotion": 2, "with_votes": 0, "copies_left_out": 0,
                      "listed_but_missing": 1}

    (tmp_path / "set" / "labels.csv").write_text("image,identity,emotion\na_0001.jpg,A,joy\n")
    with pytest.raises(InputError, match=r"labels.csv:2.*'joy'"):
        corpus.read_corpus(tmp_path)
    (tmp_path / "set" / "labels.csv").write_text("file,who\na_0001.jpg,A\n")
    with pytest.raises(InputError, match="no column"):
        corpus.read_corpus(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        corpus.read_corpus(tmp_path / "nope")


def test_validation_split_never_shares_a_person():
    labels = faces_dir() / "lfw" / "labels.csv"
    if not labels.is_file():
        pytest.skip(f"face corpus not found in {faces_dir()} (set RTATL_FACES)")
    import csv

    rows = list(csv.DictReader(open(labels)))
    recs = [corpus.FaceRecord(Path(r["image"]), r["identity"], r["emotion"]) for r in rows]
    train, val = corpus.split_records(recs, 0.1, seed=0)
    assert not {r.identity for r in train} & {r.identity for r in val}
    assert len(train) + len(val) == len(recs)
    share = len({r.identity for r in val}) / len({r.identity for r in recs})
    assert 0.07 < share < 0.13, share
    # stable: the same people on the same side for the same seed; another seed moves people
    assert [r.identity for r in corpus.split_records(recs, 0.1, seed=0)[1]] == [r.identity for r in val]
    assert {r.identity for r in corpus.split_records(recs, 0.1, seed=1)[1]} != {r.identity for r in val}


# ---------------------------------------------------------------- targets
def test_targets_combine_teacher_prior_and_edits():
    j = {a: AUS.index(a) for a in AUS}
    t = np.zeros(len(AUS), np.float32)
    t[j[12]], t[j[4]] = 0.8, 0.3
    happy = targets.combine(t, "happiness", AUS)
    assert happy[j[12]] == pytest.approx(max(0.8, 0.65 + 0.35 * 0.8))
    # teacher blind to AU6 (cheekSquint 0): AU6 evidence from the smile (0.7 x 0.8), then the prior
    assert happy[j[6]] == pytest.approx(0.65 * 0.8 + 0.35 * 0.7 * 0.8)
    assert happy[j[4]] == pytest.approx(0.3)  # not a prototype: untouched
    plain = targets.combine(t, "", AUS)
    assert plain[j[6]] == pytest.approx(0.56) and np.delete(plain, j[6]).tolist() == np.delete(t, j[6]).tolist()
    neutral = targets.combine(t, "neutral", AUS)
    assert neutral[j[12]] == pytest.approx(0.4) and neutral.max() < 0.5
    ed = targets.edited(neutral, (1, 2), AUS)
    assert ed[j[1]] == 1.0 and ed[j[2]] == 1.0 and ed[j[12]] == pytest.approx(0.4)
    assert targets.hard(np.array([-1.0, 0.49, 0.5, 1.0])).tolist() == [-1, 0, 1, 1]


def test_crowd_votes_count_by_share_and_copies_are_left_out(tmp_path):
    """FER+'s layout: votes as soft priors (half of the votes count fully), no identity column,
    its own split, and an identical copy (same_as) read once."""
    import cv2

    from rtatl_sdk.contract.emotions import EMOTIONS

    j = {a: AUS.index(a) for a in AUS}
    t = np.zeros(len(AUS), np.float32)
    share = np.zeros(len(EMOTIONS))
    share[EMOTIONS.index("sadness")], share[EMOTIONS.index("neutral")] = 0.25, 0.75
    faint = targets.combine(t, "", AUS, share)  # a quarter of the raters saw sadness: half the prior
    share[EMOTIONS.index("sadness")], share[EMOTIONS.index("neutral")] = 0.6, 0.4
    clear = targets.combine(t, "", AUS, share)
    assert faint[j[15]] == pytest.approx(0.65 * 0.5 * 0.8) and clear[j[15]] == pytest.approx(0.65 * 0.8)
    assert targets.intensity(np.array([-1.0, 0.0, 0.5]))[1:].tolist() == [0.0, 2.5]
    d = tmp_path / "fer"
    d.mkdir()
    for name in ("f0.png", "f1.png", "f2.png"):
        cv2.imwrite(str(d / name), np.full((48, 48), 90, np.uint8))
    (d / "labels.csv").write_text("image,identity,emotion,votes,split,same_as\n"
                                  "f0.png,,sadness,sadness:6;neutral:2;unknown:2,train,\n"
                                  "f1.png,,,neutral:4;anger:4,test,\n"
                                  "f2.png,,sadness,sadness:6;neutral:2;unknown:2,test,f0.png\n")
    recs, counts = corpus.read_corpus(tmp_path)
    assert [r.path.name for r in recs] == ["f0.png", "f1.png"] and counts["copies_left_out"] == 1
    assert recs[0].votes[EMOTIONS.index("sadness")] == pytest.approx(0.75) and recs[0].split == "train"
    train, val = corpus.split_records(recs, 0.5)
    assert [r.path.name for r in train] == ["f0.png"] and val == []
    assert [r.path.name for r in corpus.test_records(recs)] == ["f1.png"]
    (d / "labels.csv").write_text("image,identity,emotion,votes\nf0.png,,,sadness=6\n")
    with pytest.raises(InputError, match=r"labels.csv:2.*sadness=6"):
        corpus.read_corpus(tmp_path)


# ---------------------------------------------------------------- measures
def test_auc_matches_pairwise_counting_with_ties():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 4, 40).astype(float)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert measures.auc(pos, neg) == pytest.approx(brute)
    assert measures.auc([1, 2], [0]) == 1.0 and measures.auc([0], [1, 2]) == 0.0
    with pytest.raises(ValueError):
        measures.auc([], [1])


def test_thresholds_fit_each_au_and_keep_half_without_data():
    rng = np.random.default_rng(1)
    y = (rng.random((400, 2)) < 0.3).astype(np.int64)
    probs = np.where(y == 1, rng.uniform(0.15, 0.3, y.shape), rng.uniform(0.0, 0.12, y.shape))
    y[:, 1] = 0
    y[:3, 1] = 1
    thr, why = measures.fit_thresholds(probs, y)
    assert 0.12 < thr[0] <= 0.15, thr  # separates the classes: far from 0.5
    assert thr[1] == 0.5 and "only 3 positives" in why[1]
    # a neutral face may not be called positive too often: the threshold rises above its scores
    neutral = np.zeros(len(y), bool)
    neutral[y[:, 0] == 0] = True
    probs[neutral, 0] = np.linspace(0.0, 0.5, neutral.sum())
    thr, why = measures.fit_thresholds(probs, y, neutral=neutral, max_neutral_rate=0.1)
    assert (probs[neutral, 0] >= thr[0]).mean() <= 0.1 and "neutral faces" in why[0]


def test_neutral_rates_per_au_fit_each_column_under_its_own_rate_and_bad_overrides_are_named():
    from training.recipes import spec

    rng = np.random.default_rng(2)
    y = (rng.random((300, 2)) < 0.3).astype(np.int64)
    probs = 0.9 * rng.random((300, 2))  # the grid's top (0.95) lies above every score: any rate is reachable
    neutral = y.sum(1) == 0
    thr, _ = measures.fit_thresholds(probs, y, neutral=neutral, max_neutral_rate=[0.02, 0.3])
    assert (probs[neutral, 0] >= thr[0]).mean() <= 0.02 < (probs[neutral, 1] >= thr[1]).mean() <= 0.3
    assert spec.parse_rate_overrides(["AU12=0.08", "6=0.1"], AUS) == {12: 0.08, 6: 0.1}
    for bad, why in (("AU12", "AU=RATE"), ("AU12=1.5", "between 0 and 1"), ("AU99=0.1", "not in the recipe's AU set"),
                     ("x=0.1", "AU=RATE")):
        with pytest.raises(InputError, match=why) as exc:
            spec.parse_rate_overrides([bad], AUS)
        assert bad in str(exc.value)
    assert spec.describe_rates(0.02, {6: 0.08, 12: 0.08}, AUS) == "2% per AU (8% for AU06, AU12)"
    assert spec.describe_rates(0.05, {}, AUS) == "5% per AU"
    assert spec.neutral_rates(0.02, {12: 0.08}, AUS)[list(AUS).index(12)] == 0.08


def test_paired_bootstrap_resamples_people_and_finds_only_real_differences():
    rng = np.random.default_rng(0)
    for _ in range(20):  # the sorting AUC is the rank AUC, ties included
        p, n = rng.integers(0, 5, 17) / 4, rng.integers(0, 5, 23) / 4
        assert measures.fast_auc(p, n) == pytest.approx(measures.auc(p, n), abs=1e-12)
    people = np.repeat([f"p{k}" for k in range(60)], 2)
    emotions = np.tile(["neutral", "happiness"], 60)
    a = rng.uniform(0, 0.5, (120, len(AUS)))
    a[emotions == "happiness", AUS.index(12)] += 0.5  # AU12 separates perfectly
    b = a.copy()
    b[:, AUS.index(12)] = rng.uniform(0, 1, 120)  # the other model's AU12 is noise
    same = measures.paired_bootstrap(a, a, emotions, people, AUS, reps=200)
    assert same["people"] == 60 and all(r == {"diff": 0.0, "ci95": [0.0, 0.0]} for r in same["rows"].values())
    rep = measures.paired_bootstrap(a, b, emotions, people, AUS, reps=200)
    assert set(rep["rows"]) == set(measures.judge(a, [0.5] * len(AUS), emotions, people, AUS)["contrasts"]) | {"AUC mean"}
    au12 = rep["rows"]["AU12 happiness>neutral"]
    assert au12["diff"] > 0.3 and au12["ci95"][0] > 0.2
    au06 = rep["rows"]["AU06 happiness>neutral"]
    assert au06["diff"] == 0.0 and au06["ci95"] == [0.0, 0.0]  # the same column in both


def test_judge_counts_neutral_presence_contrasts_and_rises():
    emotions = np.array(["neutral"] * 4 + ["happiness"] * 4)
    people = np.array(["a", "b", "c", "d"] * 2)
    scores = np.zeros((8, len(AUS)))
    scores[4:, AUS.index(12)] = 0.9
    scores[:4, AUS.index(4)] = 0.8  # a neutral face with a lowered brow on everyone
    rep = measures.judge(scores, [0.5] * len(AUS), emotions, people, AUS)
    assert rep["contrasts"]["AU12 happiness>neutral"] == {"auc": 1.0, "n": [4, 4]}
    assert rep["contrasts"]["AU06 happiness>neutral"]["auc"] == 0.5
    assert rep["neutral_present"] == 1.0
    assert rep["rise"]["AU12"] == {"mean_rise": 0.9, "share_rising": 1.0, "people": 4}
    assert rep["rise"]["AU06"]["share_rising"] == 0.0


def test_tradeoff_fits_on_one_half_of_the_people_and_judges_the_other():
    rng = np.random.default_rng(3)
    aus = AU_SETS["OPENFACE"]
    people = np.repeat([f"p{i}" for i in range(40)], 4)
    emotions = np.tile(["neutral", "neutral", "happiness", "surprise"], 40)
    probs = rng.uniform(0.0, 0.6, (len(people), len(aus)))  # rest faces drift up to 0.6 on every AU
    j12 = aus.index(12)
    probs[emotions == "happiness", j12] = rng.uniform(0.5, 1.0, (emotions == "happiness").sum())
    labels = (probs > 0.55).astype(np.int8)
    curve = measures.tradeoff(probs, emotions, people, aus, labels, labels, (0.02, 0.3))
    assert curve["people"] + curve["fit_people"] == 40 and curve["faces"] == 4 * curve["people"]
    strict, loose = curve["rows"]
    assert strict["neutral_rate"] == "2%" and loose["neutral_rate"] == "30%"
    # a stricter rate calls fewer AUs on the other half's neutral faces, and keeps most smiles
    assert strict["neutral_present"] < loose["neutral_present"]
    assert strict["neutral_present"] < 0.1 * len(aus)
    assert strict["present_on_happy"]["AU12"] >= 0.5
    per_au = measures.tradeoff(probs, emotions, people, aus, labels, labels, [("mixed", [0.02] * 17 + [0.3])])
    assert per_au["rows"][0]["neutral_rate"] == "mixed"
    assert strict["neutral_present"] <= per_au["rows"][0]["neutral_present"] <= loose["neutral_present"]
    text = measures.tradeoff_table(curve)
    assert "| 2% |" in text and f"thresholds fitted on the other {curve['fit_people']} people" in text
    # AU25/26/05 surprise > neutral are judged for OpenFace's set, not for BP4D's
    rep = measures.judge(probs, [0.5] * len(aus), emotions, people, aus)
    assert {"AU25 surprise>neutral", "AU26 surprise>neutral", "AU05 surprise>neutral"} <= set(rep["contrasts"])
    common = [a for a in AUS if a in aus]  # BP4D's set without AU24, which OpenFace 2.2 lacks
    rep12 = measures.judge(probs[:, [aus.index(a) for a in common]], [0.5] * len(common), emotions, people, common)
    assert not any(k.startswith(("AU25", "AU26", "AU05")) for k in rep12["contrasts"])


# ---------------------------------------------------------------- end to end on a tiny slice
@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory, media):
    """A corpus laid out like ../shared/faces, made from the repository's media: frames of two
    people seen neutral and smiling, and the five people of multi_face.jpg, with labels.csv."""
    import csv

    import cv2

    from rtatl_sdk.stream.video import iter_frames

    d = tmp_path_factory.mktemp("faces") / "set"
    d.mkdir()
    rows = []
    # names chosen so that the seeded split puts "the_man" (neutral and smiling) in validation
    clips = {"the_man": ("single_face.mp4", {0: "neutral", 6: "neutral", 12: "neutral", 30: "happiness", 45: "happiness",
                                         60: "happiness"}),
             "woman": ("WolfgangLanger_Pexels.mp4", {0: "", 20: "neutral", 40: "sadness", 89: "sadness", 290: "happiness",
                                                      300: "happiness", 310: "happiness"})}
    for who, (clip, picks) in clips.items():
        for fr in iter_frames(media / clip, max_frames=max(picks) + 1):
            if fr.index in picks:
                name = f"{who}_{fr.index:04d}.jpg"
                cv2.imwrite(str(d / name), fr.image)
                rows.append({"image": name, "identity": who, "emotion": picks[fr.index]})
    group = cv2.imread(str(media / "multi_face.jpg"))
    w = group.shape[1] // 5
    for k in range(5):  # one person per fifth of the photo
        name = f"group{k}_0001.jpg"
        cv2.imwrite(str(d / name), group[:, k * w:(k + 1) * w])
        rows.append({"image": name, "identity": f"group{k}", "emotion": "happiness" if k else "surprise"})
    with open(d / "labels.csv", "w", newline="") as fh:
        wr = csv.DictWriter(fh, ["image", "identity", "emotion"])
        wr.writeheader()
        wr.writerows(rows)
    return d.parent


@pytest.mark.media
def test_recipe_runs_end_to_end_and_resumes(tiny_corpus, media, tmp_path, capsys):
    """The recipe end to end with the lighter graph (``--graph light``; the shipped graph runs in
    the OpenFace test below), resumed, and exported with fp32 parity against the checkpoint."""
    pytest.importorskip("torch")
    from training.checkpoint import load_checkpoint
    from training.recipes import default_model
    from training.recipes.default_model import read_extras

    out = tmp_path / "run"
    common = ["--faces", str(tiny_corpus), "--media", str(media), "--out", str(out), "--val-fraction", "0.5",
              "--edits", "6", "--batch", "4", "--unlabelled-batch", "2", "--ff", "64", "--workers", "1",
              "--clip-frames", "12", "--no-progress", "--graph", "light"]
    assert default_model.main(common + ["--steps", "2", "--eval-every", "1"]) == 0
    first = json.loads((out / "selection.json").read_text())
    assert [h["step"] for h in first] == [1, 2]
    # resumed: the data and the first two segments are kept, training continues at step 2
    assert default_model.main(common + ["--steps", "3", "--eval-every", "1"]) == 0
    sel = json.loads((out / "selection.json").read_text())
    assert [h["step"] for h in sel] == [1, 2, 3] and sel[:2] == first
    log = [json.loads(line) for line in (out / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # no step trained twice

    data = out / "data"
    train_people = set(read_extras(data / "train")["identity"]) - {""}
    val_people = set(read_extras(data / "val")["identity"])
    assert val_people == {"set/the_man", "set/group3"} and not train_people & val_people
    summary = json.loads((out / "data_summary.json").read_text())
    assert 0 < summary["edits"] <= 6 and summary["clip_labelled"] == 6

    state = load_checkpoint(out / "model.ckpt")
    report = json.loads((out / "report.json").read_text())
    assert len(state["thresholds"]) == len(AUS) and all(0 < t < 1 for t in state["thresholds"])
    assert state["thresholds"] == report["validation"]["thresholds"]
    assert state["metrics"]["val_faces"] == report["validation"]["student"]["faces"] > 0
    assert "Research use only" in state["notes"]
    m = state["config"]["model"]
    assert (m["work_size"], m["d"], m["roi_cells"]) == (128, 64, 6) and "resized to 128 px" in state["notes"]
    from export import export_model

    (rep,) = export_model(out / "model.ckpt", tmp_path / "m")
    assert rep.passed, rep.summary()  # fp32 ONNX vs the checkpoint within 1e-4, batch consistency
    assert "| AUs present per neutral face" in (out / "report.md").read_text()
    assert report["validation"]["teacher"]["faces"] == report["validation"]["student"]["faces"]
    _distil_and_continue(common, out, tmp_path / "m" / "model.onnx", tmp_path / "run2")


def _distil_and_continue(common, out, onnx, out2):
    """``--distil-from`` the exported model, ``--start-from`` the first run's checkpoint at step 3."""
    import shutil

    from training.checkpoint import load_checkpoint
    from training.data import cache as cache_format
    from training.recipes import default_model, distil

    shutil.copytree(out / "data", out2 / "data")
    shutil.copyfile(out / "data_summary.json", out2 / "data_summary.json")
    args = [*common[:common.index("--out")], "--out", str(out2), *common[common.index("--out") + 2:],
            "--distil-from", str(onnx), "--distil-weight", "0.25", "--start-from", str(out / "train" / "last.ckpt")]
    assert default_model.main(args + ["--steps", "3"]) == 2  # the checkpoint is at step 3 already: refused
    assert default_model.main(args + ["--steps", "4", "--eval-every", "1"]) == 0
    record = json.loads((out2 / "data" / "train" / distil.RECORD).read_text())
    assert record["weight"] == 0.25 and record["sha256"] == distil.file_sha256(onnx)
    probs, _ = distil.model_outputs(onnx, out2 / "data" / "train", AUS)
    parts = list(cache_format.iter_parts(out2 / "data" / "train"))
    assert record["faces"] == sum(len(p) for p in parts) == len(probs)
    start = 0
    for part in parts:
        base, p = part.extra["undistilled_targets"], probs[start:start + len(part)]
        start += len(part)
        want = np.where(base >= 0, 0.75 * base + 0.25 * p, base)
        if part.key.startswith("edits"):
            assert (base == 1).any()
            want = np.where(base == 1, 1.0, want)  # an edit's AUs stay exactly 1
        np.testing.assert_allclose(part.targets, want, atol=1e-6)
        assert (part.labels == (part.targets >= 0.5)).all()
    sel = json.loads((out2 / "selection.json").read_text())
    assert [h["step"] for h in sel] == [3, 4] and sel[0]["start"] == str(out / "train" / "last.ckpt")
    notes = load_checkpoint(out2 / "model.ckpt")["notes"]
    assert "weight 0.25) from the outputs of model.onnx" in notes and "continued from last.ckpt at step 3" in notes
    # again with the same model and weight: the targets are not blended twice
    assert distil.distil_cache(out2 / "data" / "train", onnx, 0.25, AUS) == record


def test_distillation_refuses_a_model_of_another_au_set_a_broken_file_and_a_bad_weight(tmp_path):
    from rtatl_sdk import store
    from training.recipes import distil

    with pytest.raises(InputError, match="predicts .*not the recipe's"):
        distil.model_outputs(store.PACKAGE_MODELS / "v2" / "model.int8.onnx", tmp_path, (1, 2, 4))
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError, match="x.onnx.*not a loadable ONNX model"):
        distil.model_outputs(bad, tmp_path, AUS)
    with pytest.raises(InputError, match="--distil-weight 1.5: must lie in"):
        distil.distil_cache(tmp_path, bad, 1.5, AUS)
    with pytest.raises(InputError, match="no such file"):
        distil.distil_cache(tmp_path, tmp_path / "none.onnx", 0.5, AUS)


def test_recipe_refuses_missing_folders(tmp_path, capsys):
    pytest.importorskip("torch")
    from training.recipes import default_model

    assert default_model.main(["--faces", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "--faces" in capsys.readouterr().err


@pytest.mark.media
def test_default_recipe_refuses_faces_without_a_face_in_a_split(media, tmp_path, capsys):
    """Images in which no face is found: the validation split is empty, so the recipe stops with
    one line saying so (no traceback later when it fits thresholds on nothing)."""
    import csv
    import shutil

    from training.recipes import default_model

    d = tmp_path / "faces" / "set"
    d.mkdir(parents=True)
    with open(d / "labels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, ["image", "identity", "emotion"])
        w.writeheader()
        for k in range(6):
            shutil.copyfile(media / "free-mountain-vector-01.jpg", d / f"m{k}.jpg")
            w.writerow({"image": f"m{k}.jpg", "identity": f"p{k}", "emotion": "neutral"})
    assert default_model.main(["--faces", str(tmp_path / "faces"), "--media", str(media), "--out", str(tmp_path / "o"),
                               "--val-fraction", "0.5", "--edits", "0", "--workers", "1", "--clip-frames", "4",
                               "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "split has no usable face" in err and "without a face found" in err and "Traceback" not in err


@pytest.mark.media
def test_table1_analogue_runs_variants_resumes_and_reports(tiny_corpus, media, tmp_path, capsys):
    pytest.importorskip("torch")
    from training.recipes import table1

    out = tmp_path / "t1"
    common = ["--faces", str(tiny_corpus), "--media", str(media), "--out", str(out), "--val-fraction", "0.5",
              "--batch", "4", "--unlabelled-batch", "2", "--ff", "64", "--workers", "1", "--clip-frames", "12",
              "--steps", "2", "--no-progress"]
    assert table1.main(common + ["--seeds", "0", "--variants", "backbone", "rotation"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert [(r["variant"], r["seed"]) for r in rows] == [("backbone", 0), ("rotation", 0)]
    assert all(r["auc_mean"] is not None and 0 <= r["auc_mean"] <= 1 for r in rows)  # the man: neutral vs happy
    assert table1.main(common + ["--seeds", "0", "1", "--variants", "backbone", "--label-fraction", "0.5"]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert {(r["variant"], r["seed"], r["label_fraction"]) for r in rows} == {
        ("backbone", 0, 1.0), ("rotation", 0, 1.0), ("backbone", 0, 0.5), ("backbone", 1, 0.5)}
    assert sorted(p.name for p in (out / "results").iterdir()) == [  # one results file per run
        "backbone_s0_steps2.json", "backbone_s0_steps2_labels0.5.json", "backbone_s1_steps2_labels0.5.json",
        "rotation_s0_steps2.json"]
    before = (out / "results" / "backbone_s0_steps2.json").stat().st_mtime_ns
    trained = (out / "rotation_s0" / "last.ckpt").stat().st_mtime_ns
    assert table1.main(common + ["--seeds", "0", "--variants", "backbone", "rotation"]) == 0  # all done: nothing rerun
    assert (out / "results" / "backbone_s0_steps2.json").stat().st_mtime_ns == before
    # a run folder of the time before per-run files (results.json, no results/): its rows become
    # files and count as done, nothing is trained again
    import shutil

    shutil.rmtree(out / "results")
    assert table1.main(common + ["--seeds", "0", "--variants", "backbone", "rotation"]) == 0
    assert len(json.loads((out / "results.json").read_text())) == 4 and (out / "results" / "rotation_s0_steps2.json").is_file()
    assert len(list((out / "results").iterdir())) == 4 and (out / "rotation_s0" / "last.ckpt").stat().st_mtime_ns == trained
    table = (out / "table1.md").read_text()
    assert "| backbone, 50% labels | 2 |" in table and "| rotation | 1 |" in table
    assert (out / "table1.png").stat().st_size > 1000
    assert "| backbone | F1 " in table and "(2) | F1 " in table  # the curve: backbone at 50 % (2 seeds) and 100 %
    assert "rotation | F1" not in table  # one label fraction: no curve
    assert (out / "label_curve.png").stat().st_size > 1000


def test_analogue_pretrains_on_one_half_and_runs_variants_on_the_other(tiny_corpus, media, tmp_path, capsys):
    """The pretrained regime: a trunk trained on the "pretrain" identity half, saved in
    torchvision's layout, loaded strictly by every variant of the run on the "analogue" half;
    one results file per run, skipped when present."""
    torch = pytest.importorskip("torch")
    from training.recipes import analogue

    people = [f"set/{p}" for p in ["the_man", "woman"] + [f"group{k}" for k in range(5)]]  # corpus identities

    def ok(seed):  # the man judged in the analogue half; each half with people on both sides of its split
        half = {p: corpus.identity_half(p, seed) for p in people}
        val = {p: corpus.is_validation(p, 0.5, 0) for p in people}
        return half["set/the_man"] == "analogue" and val["set/the_man"] and all(
            any(half[p] == h and val[p] == v for p in people) for h in corpus.HALVES for v in (True, False))

    half_seed = next(s for s in range(200) if ok(s))
    out, res = tmp_path / "an", tmp_path / "results"
    common = ["--faces", str(tiny_corpus), "--media", str(media), "--out", str(out), "--results", str(res),
              "--val-fraction", "0.5", "--batch", "4", "--unlabelled-batch", "2", "--ff", "64", "--workers", "1",
              "--clip-frames", "12", "--half-seed", str(half_seed), "--no-progress"]
    assert analogue.main(["run", *common, "--steps", "2"]) == 2  # no trunk yet: refused by name
    assert "pretrained trunk" in capsys.readouterr().err
    torch.save({"head.weight": torch.zeros(3)}, tmp_path / "not_a_trunk.pth")
    assert analogue.main(["run", *common, "--steps", "2", "--pretrained", str(tmp_path / "not_a_trunk.pth")]) == 2
    err = capsys.readouterr().err
    assert "not_a_trunk.pth: not a torchvision ResNet-18 state dict" in err and "Traceback" not in err
    assert not (out / "data").exists()  # refused before any data were built
    assert analogue.main(["pretrain", *common, "--steps", "2", "--eval-every", "1"]) == 0
    trunk = out / "pretrain" / analogue.TRUNK
    prov = json.loads((res / "pretrain.json").read_text())
    assert prov["half"] == "pretrain" and [c["step"] for c in prov["curve"]] == [1, 2]
    pre_people = {p for p in people if corpus.identity_half(p, half_seed) == "pretrain"}
    assert prov["identities"] == len(pre_people)
    state = torch.load(trunk, weights_only=True)
    assert "layer4.1.bn2.running_var" in state and not any(k.startswith("fc.") for k in state)
    # runs/ gone, results kept: the trunk is trained again, and it is the same network (so the
    # results of runs from the first one still stand)
    import shutil

    shutil.rmtree(out / "pretrain" / "train")
    trunk.unlink()
    assert analogue.main(["pretrain", *common, "--steps", "2", "--eval-every", "1"]) == 0
    again = json.loads((res / "pretrain.json").read_text())
    assert again["same_as_earlier"] is True and again["weights_sha256"] == prov["weights_sha256"]
    assert torch.equal(torch.load(trunk, weights_only=True)["conv1.weight"], state["conv1.weight"])
    assert not (out / "data_summary.json").exists()  # the analogue's data are built by `run`, from the other half
    assert analogue.main(["run", *common, "--steps", "2", "--seeds", "0", "--variants", "backbone", "rtatl"]) == 0
    an_summary = json.loads((out / "data_summary.json").read_text())
    assert an_summary["train_identities"] + an_summary["val_identities"] == len(people) - len(pre_people)
    files = sorted(p.name for p in res.iterdir() if p.suffix == ".json")
    assert files == ["backbone_s0_steps2_pretrained.json", "pretrain.json", "rtatl_s0_steps2_pretrained.json"]
    row = json.loads((res / "rtatl_s0_steps2_pretrained.json").read_text())
    assert row["init"] == analogue.TRUNK and row["variant"] == "rtatl" and row["label_fraction"] == 1.0
    for k in ("auc_mean", "f1_mean", "f1_fitted_mean"):
        assert 0 <= row[k] <= 1, (k, row[k])
    # the variant started from the trunk: its first layer is the trunk's, not a random one
    from training.checkpoint import model_from_checkpoint

    trained, _ = model_from_checkpoint(out / "backbone_s0_steps2_pretrained" / "last.ckpt")
    moved = (trained.backbone.stem[0].weight - state["conv1.weight"]).abs().max().item()
    assert moved < 0.01, moved  # two Adam steps at 3e-4 from the trunk; a random start differs by ~0.1
    stamp = (res / "backbone_s0_steps2_pretrained.json").stat().st_mtime_ns
    capsys.readouterr()
    assert analogue.main(["run", *common, "--steps", "2", "--seeds", "0", "--variants", "backbone"]) == 0
    assert (res / "backbone_s0_steps2_pretrained.json").stat().st_mtime_ns == stamp  # done: not rerun
    table = capsys.readouterr().out
    assert "| backbone | 1 |" in table and "| rtatl | 1 |" in table and (res / "table1.png").stat().st_size > 1000
    # a file from another trunk (a retrained one that came out different) is run again
    assert row["init_sha256"] == again["weights_sha256"]
    stale = res / "backbone_s0_steps2_pretrained.json"
    stale.write_text(json.dumps({**json.loads(stale.read_text()), "init_sha256": "0" * 64}))
    assert analogue.main(["run", *common, "--steps", "2", "--seeds", "0", "--variants", "backbone"]) == 0
    assert json.loads(stale.read_text())["init_sha256"] == again["weights_sha256"]
    # so is one written before hashes were kept, once pretrain.json records that the trunk changed
    legacy = {k: v for k, v in json.loads(stale.read_text()).items() if k != "init_sha256"}
    stale.write_text(json.dumps(legacy))
    stamp = stale.stat().st_mtime_ns
    assert analogue.main(["run", *common, "--steps", "2", "--seeds", "0", "--variants", "backbone"]) == 0
    assert stale.stat().st_mtime_ns == stamp  # the trunk was retrained the same: the legacy file stands
    (res / "pretrain.json").write_text(json.dumps({**again, "same_as_earlier": False, "hashless_results_valid": False}))
    assert analogue.main(["run", *common, "--steps", "2", "--seeds", "0", "--variants", "backbone"]) == 0
    assert "init_sha256" in json.loads(stale.read_text())
    other = {**json.loads(stale.read_text()), "seed": 9, "init_sha256": "1" * 64}
    (res / "backbone_s9_steps2_pretrained.json").write_text(json.dumps(other))
    assert {r["seed"] for r in analogue.read_results(res)} == {0}  # the report never mixes trunks


def test_roii_diagnosis_runs_factors_writes_one_file_each_and_resumes(tiny_corpus, media, tmp_path, capsys):
    pytest.importorskip("torch")
    from training.recipes import roii_diagnosis

    out, res = tmp_path / "diag", tmp_path / "results"
    common = ["--faces", str(tiny_corpus), "--media", str(media), "--out", str(out), "--results", str(res),
              "--val-fraction", "0.5", "--batch", "4", "--unlabelled-batch", "2", "--ff", "64", "--workers", "1",
              "--clip-frames", "12", "--steps", "2", "--no-progress"]
    assert roii_diagnosis.main(common + ["--factors", "roii_detach", "roii", "roii_bn_intact"]) == 0
    files = sorted(p.name for p in res.iterdir())
    assert files == ["roii_bn_intact_s0_steps2.json", "roii_detach_s0_steps2.json", "roii_s0_steps2.json"]
    det = json.loads((res / "roii_detach_s0_steps2.json").read_text())
    assert det["model_settings"]["roii_detach"] is True and det["init"] == "random" and det["steps"] == 2
    assert det["grad_norms_end"]["rec"]["trunk"] == 0 and det["grad_norms_end"]["sup"]["trunk"] > 0
    full = json.loads((res / "roii_s0_steps2.json").read_text())
    assert full["grad_norms_init"]["rec"]["trunk"] > 0
    for row in (det, full):
        assert 0 <= row["f1_card_mean"] <= 1 and 0 <= row["f1_fitted_mean"] <= 1 and 0 <= row["auc_mean"] <= 1
    bn = json.loads((res / "roii_bn_intact_s0_steps2.json").read_text())
    assert bn["bn_images"] == 80 and "grad_norms_end" not in bn
    stamp = (res / "roii_s0_steps2.json").stat().st_mtime_ns
    capsys.readouterr()
    assert roii_diagnosis.main(common + ["--factors", "roii", "roii_detach"]) == 0  # done: nothing rerun
    assert (res / "roii_s0_steps2.json").stat().st_mtime_ns == stamp
    table = capsys.readouterr().out
    assert "| roii_detach | 1 |" in table and "| roii_bn_intact | 1 |" in table


@pytest.mark.media
def test_recipe_with_openface_aus_and_the_intensity_head(tiny_corpus, media, tmp_path):
    """Default model v2's recipe on a tiny slice: 18 AUs, the intensity head regressed on the
    teacher's strength and the edits' weights, and a card that lists the 18 AUs with thresholds
    and says what the intensity scale is."""
    pytest.importorskip("torch")
    from export import export_model
    from rtatl_sdk.contract.au import AU_SETS
    from rtatl_sdk.engines import OnnxEngine
    from training.checkpoint import load_checkpoint
    from training.data.dataset import CacheIndex
    from training.recipes import default_model

    out = tmp_path / "v2"
    assert default_model.main(["--faces", str(tiny_corpus), "--media", str(media), "--out", str(out),
                               "--val-fraction", "0.5", "--edits", "6", "--batch", "4", "--unlabelled-batch", "2",
                               "--ff", "64", "--workers", "1", "--clip-frames", "12", "--no-progress",
                               "--steps", "1", "--eval-every", "1", "--aus", "openface", "--intensity",
                               "--emotions"]) == 0
    idx = CacheIndex(out / "data" / "train")
    assert idx.aus == AU_SETS["OPENFACE"] and ((idx.intensities >= 0) & (idx.intensities <= 5)).any()
    edits = np.char.startswith(idx.keys.astype(str), "edits")
    assert edits.any() and (idx.intensities[edits].max(1) >= 3.2).all()  # 4 x strength 0.8-1.6
    state = load_checkpoint(out / "model.ckpt")
    assert len(state["aus"]) == len(state["thresholds"]) == 18 and "not FACS" in state["intensity_scale"]
    assert state["config"]["model"]["crop_prob"] == 0.0  # the RoII diagnosis's setting: unlabelled images only
    report = json.loads((out / "report.json").read_text())
    assert set(report["validation"]["student"]["intensity_pearson_vs_teacher"]) == {f"AU{a:02d}" for a in AU_SETS["OPENFACE"]}
    # held-out edits: the validation man's neutral faces edited once per editable AU, scored edited vs unedited
    from training.edits import AU_EDITS

    ec = report["validation"]["student"]["edit_contrasts"]
    editable = {f"AU{a:02d}" for a in AU_SETS["OPENFACE"] if a in AU_EDITS}
    assert "AU09" in editable and set(ec) == editable, set(ec) ^ editable
    assert all(c["faces"] >= 1 and 0 <= c["auc"] <= 1 and 0 <= c["share_rising"] <= 1 for c in ec.values())
    val_edits = CacheIndex(out / "data" / "val_edits")
    assert len(val_edits) == sum(c["faces"] for c in ec.values())
    assert "edited one AU at a time" in (out / "report.md").read_text()
    strict = report["validation"]["strict"]
    rates = strict["neutral_rate"]  # the strict point's default: 2 % per AU, 8 % for the smile's AUs
    assert rates["AU12"] == rates["AU06"] == 0.08 and rates["AU01"] == rates["AU45"] == 0.02
    assert state["thresholds_strict"] == strict["thresholds"]
    # the default operating point: a budget of AUs per neutral face; calibration slopes and rest levels per AU
    op = report["validation"]["operating_point"]
    assert sum(op["budget"]["per_au_neutral_rate"]) <= op["budget"]["budget"] + 1e-9
    assert len(state["calibration"]) == len(state["intensity_rest"]) == 18
    assert all(0.1 <= a <= 5 for a in state["calibration"]) and all(0 <= r <= 5 for r in state["intensity_rest"])
    curve = strict["tradeoff"]["rows"]
    assert len(curve) == 6 and curve[-1]["neutral_rate"] == "the card's: 2% per AU (8% for AU06, AU12)"
    assert "2% per AU (8% for AU06, AU12)" in state["notes"]
    export_model(out / "model.ckpt", tmp_path / "m", faces=media / "multi_face.jpg")
    card = OnnxEngine(tmp_path / "m" / "model.onnx", ["CPUExecutionProvider"]).card
    assert card.aus == [f"AU{a:02d}" for a in AU_SETS["OPENFACE"]] and len(card.thresholds) == 18
    assert "blendshape" in card.intensity_scale and "not FACS" in card.intensity_scale
    # the expression head: a named output, its classes on the card, checked against PyTorch like the logits
    from rtatl_sdk.contract.emotions import EMOTIONS

    assert card.emotions == list(EMOTIONS) and "emotions" in card.outputs
    assert card.calibration == state["calibration"] and card.intensity_rest == state["intensity_rest"]
    assert card.thresholds_strict == state["thresholds_strict"]
    rep = json.loads((tmp_path / "m" / "export_report.json").read_text())
    fp32 = next(f for f in rep if f["precision"] == "fp32")
    assert fp32["checks"]["emotions_real_faces"]["max_abs_prob"] <= 1e-3 and fp32["passed"]
    assert report["heldout_man"]["top_expression_neutral_frames"]  # the held-out man's expressions are reported


def test_a_recipe_variant_is_a_dict_of_overrides_over_the_shipped_recipe():
    """The auxiliary-task ablation differs from the default model's recipe in its variant alone."""
    from training.recipes import default_model, variants

    base = variants.recipe_for("no_aux", Path("f"), Path("m"), Path("o"))
    assert base.variant == "backbone" and base.emotions and base.intensity and base.steps == 2000
    assert base.au_set == AU_SETS["OPENFACE"] and base.neutral_rate_au == {6: 0.03, 12: 0.03}
    plain = variants.recipe_for("_probe", Path("f"), Path("m"), Path("o"), variants={"_probe": {}})
    a, b = base.model_dump(), plain.model_dump()
    assert {k for k in a if a[k] != b[k]} == {"variant"}
    # the shipped recipe as README "Models" gives its command line: the same settings
    readme = Path(REPO / "README.md").read_text()
    command = readme.split("python -m training.recipes.default_model --faces ../shared/faces --out runs/v3", 1)[1]
    argv = command.split("\nrtatl-export", 1)[0].replace("\\\n", " ").split()
    cli = default_model.Recipe.parse(vars(default_model._parser().parse_args(argv)))
    assert cli.model_dump(exclude={"faces", "media", "out", "workers", "progress"}) == \
        plain.model_dump(exclude={"faces", "media", "out", "workers", "progress"})
    with pytest.raises(InputError, match="variant"):
        variants.recipe_for("_bad", Path("f"), Path("m"), Path("o"), variants={"_bad": {"steps": 0}})
