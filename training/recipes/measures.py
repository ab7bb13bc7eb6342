"""How a default model is judged on people it never saw, the same code for student and teacher.

Every measure takes per-face AU scores in [0, 1] (a model's probabilities, or the teacher's
blendshape scores) with the thresholds that turn them into decisions, plus each face's crowd
emotion and identity:

* ``contrasts``: the AUC of a prototype AU between two emotions (AU12 happiness vs neutral, ...):
  the probability that a face of the first emotion scores above one of the second (0.5 =
  chance). Threshold-free.
* ``neutral_present``: how many AUs are called present on a neutral face (mean).
* ``rise``: for people photographed both neutral and happy, the mean of (their happy score -
  their neutral score) for AU12 and AU6, and the share of people whose score rises.
* ``f1_vs_teacher`` / ``f1_vs_targets``: per-AU F1 of the decisions against the teacher's
  decisions and against the combined training targets (``targets.hard``).
"""

from __future__ import annotations

import numpy as np

from rtatl_sdk.contract.au import au_label
from rtatl_sdk.contract.card import anchored as card_anchored
from rtatl_sdk.contract.card import calibrated as card_calibrated

#: (AU, emotion expected to show it, emotion expected not to)
#: (the prototypes of the six basic emotions: happiness 6+12, surprise 1+2+5+25/26, anger 4+7+23,
#: sadness 1+4+15, disgust 9+10, fear 1+2+4+5+20; AUs a set lacks are skipped)
CONTRASTS: tuple[tuple[int, str, str], ...] = (
    (12, "happiness", "neutral"), (6, "happiness", "neutral"), (1, "surprise", "neutral"), (2, "surprise", "neutral"),
    (4, "anger", "happiness"), (4, "sadness", "happiness"), (4, "fear", "neutral"), (7, "anger", "neutral"),
    (9, "disgust", "neutral"), (10, "disgust", "neutral"), (15, "sadness", "neutral"), (20, "fear", "neutral"),
    (23, "anger", "neutral"), (5, "surprise", "neutral"), (25, "surprise", "neutral"), (26, "surprise", "neutral"),
)
RISE_AUS = (12, 6)
MIN_SIDE = 3  #: a contrast needs at least this many faces on each side to be reported


def pct(rate: float) -> str:
    """A rate as the reports write it: 0.02 -> '2%', 0.015 -> '1.5%'."""
    return f"{100 * rate:.3g}%"


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U / n1 n2)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs at least one score on each side")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    """Binary F1 of the positive class over known entries (truth -1 ignored); 0 when undefined."""
    known = truth >= 0
    p, y = pred[known].astype(bool), truth[known] == 1
    tp, fp, fn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


#: at most this share of neutral faces may be called positive for any one AU by a fitted threshold
MAX_NEUTRAL_RATE = 0.08


def fit_thresholds(probs: np.ndarray, labels: np.ndarray, min_positives: int = 5, neutral: np.ndarray | None = None,
                   max_neutral_rate=MAX_NEUTRAL_RATE) -> tuple[list[float], list[str]]:
    """Per-AU threshold maximising F1 against ``labels`` (grid 0.05..0.95; ties: nearest 0.5),
    among the thresholds that call the AU present on at most ``max_neutral_rate`` of the
    ``neutral`` faces (a mask; F1 alone buys recall of rare AUs with false alarms on rest faces);
    ``max_neutral_rate``: one rate, or one per AU (column).

    An AU with fewer than ``min_positives`` known positives gets 0.5, or the lowest threshold
    above it that keeps the neutral faces' rate, and the reason is returned."""
    grid = np.round(np.arange(0.05, 0.951, 0.01), 2)
    out, why = [], []
    has_neutral = neutral is not None and neutral.any()
    rates = np.broadcast_to(np.asarray(max_neutral_rate, np.float64), (labels.shape[1],))
    for j in range(labels.shape[1]):
        max_neutral_rate = float(rates[j])
        pos = int((labels[:, j] == 1).sum())
        if pos < min_positives:
            t, note = 0.5, ""
            if has_neutral:
                ok = [g for g in grid if g >= 0.5 and (probs[neutral, j] >= g).mean() <= max_neutral_rate]
                t = float(ok[0]) if ok else float(grid[-1])
                note = f"; raised to keep neutral faces <= {pct(max_neutral_rate)}" if t > 0.5 else ""
            out.append(t)
            why.append(f"{t:.2f}: only {pos} positives in validation{note}")
            continue
        scores = np.array([f1(probs[:, j] >= t, labels[:, j]) for t in grid])
        note = ""
        if has_neutral:
            rate = np.array([(probs[neutral, j] >= t).mean() for t in grid])
            allowed = rate <= max_neutral_rate
            if allowed.any():
                if not allowed[scores.argmax()]:
                    note = f" (neutral faces called present <= {pct(max_neutral_rate)})"
                scores = np.where(allowed, scores, -1.0)
        best = np.flatnonzero(scores >= scores.max() - 1e-12)
        t = float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])
        out.append(t)
        why.append(f"{t:.2f}: best F1 {scores.max():.3f} over {pos} positives{note}")
    return out, why


def contrasts(scores: np.ndarray, emotions: np.ndarray, aus) -> dict[str, dict]:
    out = {}
    for au, hi, lo in CONTRASTS:
        if au not in aus:
            continue
        j = list(aus).index(au)
        a, b = scores[emotions == hi, j], scores[emotions == lo, j]
        if len(a) < MIN_SIDE or len(b) < MIN_SIDE:
            continue
        out[f"{au_label(au)} {hi}>{lo}"] = {"auc": round(auc(a, b), 4), "n": [int(len(a)), int(len(b))]}
    return out


def rise(scores: np.ndarray, emotions: np.ndarray, identities: np.ndarray, aus) -> dict[str, dict]:
    people = [p for p in np.unique(identities)
              if ((identities == p) & (emotions == "neutral")).any() and ((identities == p) & (emotions == "happiness")).any()]
    out = {}
    for au in RISE_AUS:
        if au not in aus or not people:
            continue
        j = list(aus).index(au)
        d = np.array([scores[(identities == p) & (emotions == "happiness"), j].mean()
                      - scores[(identities == p) & (emotions == "neutral"), j].mean() for p in people])
        out[au_label(au)] = {"mean_rise": round(float(d.mean()), 4), "share_rising": round(float((d > 0).mean()), 4),
                             "people": len(people)}
    return out


def judge(scores: np.ndarray, thresholds, emotions: np.ndarray, identities: np.ndarray, aus,
          teacher_labels: np.ndarray | None = None, target_labels: np.ndarray | None = None) -> dict:
    """All measures for one predictor on one set of faces."""
    scores = np.asarray(scores, np.float64)
    emotions, identities = np.asarray(emotions), np.asarray(identities)
    thr = np.asarray(thresholds, np.float64)
    present = scores >= thr
    con = contrasts(scores, emotions, aus)
    neutral = emotions == "neutral"
    rep = {
        "faces": int(len(scores)), "people": int(len(np.unique(identities))),
        "contrasts": con,
        "auc_mean": round(float(np.mean([c["auc"] for c in con.values()])), 4) if con else None,
        "neutral_present": round(float(present[neutral].sum(1).mean()), 3) if neutral.any() else None,
        "neutral_faces": int(neutral.sum()),
        "rise": rise(scores, emotions, identities, aus),
        "thresholds": {au_label(a): round(float(t), 3) for a, t in zip(aus, thr)},
    }
    for name, labels in (("f1_vs_teacher", teacher_labels), ("f1_vs_targets", target_labels)):
        if labels is not None:
            per = {au_label(a): round(f1(present[:, j], labels[:, j]), 4) for j, a in enumerate(aus)}
            rep[name] = per
            rep[name + "_mean"] = round(float(np.mean(list(per.values()))), 4)
            rep[name.replace("f1_", "positives_")] = {au_label(a): int((labels[:, j] == 1).sum()) for j, a in enumerate(aus)}
    return rep


def halves(identities, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two identity-disjoint halves of the faces (masks: fit, judge), seeded; every held-apart
    measure of the recipe uses this one split."""
    identities = np.asarray(identities)
    people = np.array(sorted(set(identities)))
    rng = np.random.default_rng([seed, 5])
    fit_people = set(rng.choice(people, size=len(people) // 2, replace=False))
    a = np.array([w in fit_people for w in identities])
    return a, ~a


def tradeoff(probs, emotions, identities, aus, teacher_labels, target_labels, rates, seed: int = 0) -> dict:
    """Thresholds fitted (``fit_thresholds``) on one half of the people under each stated neutral
    rate per AU, judged on the other half (identity-disjoint halves, seeded): what a threshold
    chosen on held-apart people does to neutral faces and to smiles. Each of ``rates`` is one rate
    for every AU, or ``(label, per-AU rates)``."""
    emotions, identities = np.asarray(emotions), np.asarray(identities)
    a, b = halves(identities, seed)
    fit_people = set(identities[a])
    happy = emotions[b] == "happiness"
    rows = []
    for rate in rates:
        label, rate = (rate if isinstance(rate, tuple) else (pct(rate), rate))
        th, _ = fit_thresholds(probs[a], target_labels[a], neutral=emotions[a] == "neutral", max_neutral_rate=rate)
        j = judge(probs[b], th, emotions[b], identities[b], aus, teacher_labels[b], target_labels[b])
        present = probs[b] >= np.asarray(th)
        smile = {au: round(float(present[happy, list(aus).index(au)].mean()), 3) if au in aus and happy.any()
                 else None for au in RISE_AUS}
        rows.append({"neutral_rate": label, "neutral_present": j["neutral_present"],
                     "f1_vs_teacher_mean": j["f1_vs_teacher_mean"],
                     "present_on_happy": {au_label(au): v for au, v in smile.items()}})
    return {"faces": int(b.sum()), "people": len(set(identities[b])), "fit_people": len(fit_people), "rows": rows}


def tradeoff_table(curve: dict) -> str:
    """Markdown for ``tradeoff``."""
    rows = ["| neutral rate per AU (fit half) | AUs present per neutral face | F1 vs teacher | AU12 present on happy faces |"
            " AU06 present on happy faces |", "|---|---|---|---|---|"]
    for r in curve["rows"]:
        h = {k: float("nan") if v is None else v for k, v in r["present_on_happy"].items()}
        rows.append(f"| {r['neutral_rate']} | {r['neutral_present']} | {r['f1_vs_teacher_mean']:.3f} | "
                    f"{h.get('AU12', float('nan')):.2f} | {h.get('AU06', float('nan')):.2f} |")
    return (f"Trade-off on {curve['faces']} faces of {curve['people']} people (thresholds fitted on the other "
            f"{curve['fit_people']} people):\n" + "\n".join(rows))


def table(student: dict, teacher: dict) -> str:
    """Markdown: the two predictors side by side."""
    rows = ["| measure | student | teacher |", "|---|---|---|"]
    for k in student["contrasts"]:
        s, t = student["contrasts"][k], teacher["contrasts"].get(k, {})
        rows.append(f"| AUC {k} (n {s['n'][0]}/{s['n'][1]}) | {s['auc']:.3f} | {t.get('auc', float('nan')):.3f} |")
    if student["auc_mean"] is not None:
        rows.append(f"| AUC mean | {student['auc_mean']:.3f} | {teacher['auc_mean']:.3f} |")
    if student["neutral_present"] is not None:
        rows.append(f"| AUs present per neutral face ({student['neutral_faces']} faces) | {student['neutral_present']:.2f} | "
                    f"{teacher['neutral_present']:.2f} |")
    for au, s in student["rise"].items():
        t = teacher["rise"].get(au, {})
        rows.append(f"| {au} rise neutral->happy, mean ({s['people']} people) | {s['mean_rise']:+.3f} | {t.get('mean_rise', float('nan')):+.3f} |")
        rows.append(f"| {au} rise neutral->happy, share of people rising | {s['share_rising']:.2f} | {t.get('share_rising', float('nan')):.2f} |")
    if "f1_vs_targets_mean" in student:
        rows.append(f"| F1 vs combined targets, mean | {student['f1_vs_targets_mean']:.3f} | {teacher['f1_vs_targets_mean']:.3f} |")
    out = "\n".join(rows)
    if "f1_vs_teacher" in student:
        aus = list(student["f1_vs_teacher"])
        out += "\n\n| AU | " + " | ".join(a[2:] for a in aus) + " | mean |\n|---|" + "---|" * (len(aus) + 1)
        out += "\n| student F1 vs teacher | " + " | ".join(f"{student['f1_vs_teacher'][a]:.2f}" for a in aus) + \
            f" | {student['f1_vs_teacher_mean']:.2f} |"
        out += "\n| teacher positives | " + " | ".join(str(student["positives_vs_teacher"][a]) for a in aus) + " | |"
        if "f1_vs_targets" in student:
            for who, rep in (("student", student), ("teacher", teacher)):
                out += f"\n| {who} F1 vs targets | " + " | ".join(f"{rep['f1_vs_targets'][a]:.2f}" for a in aus) + \
                    f" | {rep['f1_vs_targets_mean']:.2f} |"
        out += "\n| student threshold | " + " | ".join(f"{student['thresholds'][a]:.2f}" for a in aus) + " | |"
    return out


def fast_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """``auc`` by sorting (the same value, ties counted half), for many resamples."""
    neg = np.sort(np.asarray(neg, np.float64))
    pos = np.asarray(pos, np.float64)
    lo, hi = np.searchsorted(neg, pos, "left"), np.searchsorted(neg, pos, "right")
    return float((lo + 0.5 * (hi - lo)).sum() / (len(pos) * len(neg)))


def paired_bootstrap(scores_a: np.ndarray, scores_b: np.ndarray, emotions: np.ndarray, identities: np.ndarray, aus,
                     reps: int = 2000, seed: int = 0) -> dict:
    """How sure a difference between two predictors on the same faces is: each contrast's AUC of
    ``a`` minus that of ``b``, and the difference of their means, with 95 % intervals from
    ``reps`` resamples of the *people* (with replacement: a person's faces go together, as they
    are not independent). A difference whose interval holds 0 is not shown by these faces."""
    emotions, identities = np.asarray(emotions), np.asarray(identities)
    people, inverse = np.unique(identities, return_inverse=True)
    faces_of = [np.flatnonzero(inverse == k) for k in range(len(people))]
    reported = contrasts(np.asarray(scores_a, np.float64), emotions, aus)  # the contrasts judge() reports
    spec = {f"{au_label(au)} {hi}>{lo}": (list(aus).index(au), hi, lo) for au, hi, lo in CONTRASTS if au in aus}
    names = [n for n in spec if n in reported]

    def diffs(idx: np.ndarray) -> np.ndarray:
        out = []
        e = emotions[idx]
        for n in names:
            j, hi, lo = spec[n]
            a, b = idx[e == hi], idx[e == lo]
            if len(a) == 0 or len(b) == 0:
                out.append(np.nan)
                continue
            out.append(fast_auc(scores_a[a, j], scores_a[b, j]) - fast_auc(scores_b[a, j], scores_b[b, j]))
        return np.array(out)

    full = diffs(np.arange(len(emotions)))
    rng = np.random.default_rng(seed)
    boot = np.array([diffs(np.concatenate([faces_of[k] for k in rng.integers(0, len(people), len(people))]))
                     for _ in range(reps)])
    rows = {}
    for i, n in enumerate(names + ["AUC mean"]):
        d = boot[:, i] if i < len(names) else np.nanmean(boot, axis=1)
        point = full[i] if i < len(names) else float(np.mean(full))
        lo, hi = np.nanpercentile(d, [2.5, 97.5])
        rows[n] = {"diff": round(float(point), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}
    return {"people": int(len(people)), "reps": reps, "rows": rows}


# ---------------------------------------------------------------- the operating point
#: the budget of the default operating point: AUs called present per neutral face, all AUs together
NEUTRAL_BUDGET = 0.3
_GRID = np.round(np.arange(0.02, 0.981, 0.01), 2)
_GRID.setflags(write=False)


def _curves(probs: np.ndarray, labels: np.ndarray, neutral: np.ndarray):
    """Per AU and grid threshold: F1 against ``labels`` and the share of neutral faces called present."""
    f1s = np.array([[f1(probs[:, j] >= t, labels[:, j]) for t in _GRID] for j in range(labels.shape[1])])
    rates = np.array([[(probs[neutral, j] >= t).mean() if neutral.any() else 0.0 for t in _GRID]
                      for j in range(labels.shape[1])])
    return f1s, rates


def fit_budget_thresholds(probs: np.ndarray, labels: np.ndarray, neutral: np.ndarray,
                          budget: float = NEUTRAL_BUDGET) -> tuple[list[float], dict]:
    """Per-AU thresholds with the best mean F1 against ``labels`` whose neutral-face rates add up
    to at most ``budget`` AUs per neutral face: maximise sum_j F1_j - lam * rate_j per AU for each
    lam of a grid and keep the best total F1 within the budget (Lagrangian relaxation of the
    budget; per AU: ties go to the higher threshold). Returns the thresholds and the curve
    (lam, AUs per neutral face, mean F1) the choice was made on."""
    neutral = np.asarray(neutral, bool)
    f1s, rates = _curves(probs, labels, neutral)
    best, curve = None, []
    for lam in np.concatenate([[0.0], np.geomspace(0.01, 100.0, 81)]):
        gain = f1s - lam * rates
        k = np.array([np.flatnonzero(g >= g.max() - 1e-12)[-1] for g in gain])
        rows = np.arange(len(k))
        spent, mean_f1 = float(rates[rows, k].sum()), float(f1s[rows, k].mean())
        curve.append({"lambda": round(float(lam), 4), "neutral_present": round(spent, 3), "f1_mean": round(mean_f1, 4)})
        if spent <= budget + 1e-9 and (best is None or mean_f1 > best[0]):
            best = (mean_f1, k)
    if best is None:  # not even the strictest thresholds fit: call nothing that neutral faces reach
        best = (0.0, np.full(labels.shape[1], len(_GRID) - 1))
    k = best[1]
    rows = np.arange(len(k))
    return [float(_GRID[i]) for i in k], {"budget": budget, "curve": curve,
                                          "per_au_neutral_rate": [round(float(r), 4) for r in rates[rows, k]],
                                          "per_au_f1": [round(float(f), 4) for f in f1s[rows, k]]}


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def calibrated(probs: np.ndarray, thresholds, slopes) -> np.ndarray:
    """The published probability, as the SDK computes it (``rtatl_sdk.contract.card.calibrated``)."""
    return card_calibrated(probs, thresholds, slopes)


def fit_calibration(probs: np.ndarray, labels: np.ndarray, thresholds) -> list[float]:
    """Per AU the slope (0.1-5) whose calibrated probability best predicts ``labels`` (log loss
    over the known labels): one parameter, so 0.5 stays the threshold and the order of faces stays."""
    slopes = np.geomspace(0.1, 5.0, 60)
    out = []
    for j in range(labels.shape[1]):
        known = labels[:, j] >= 0
        y = labels[known, j] == 1
        if y.sum() < 3 or (~y).sum() < 3:
            out.append(1.0)
            continue
        z = logit(probs[known, j]) - logit(thresholds[j])
        loss = [np.mean(np.logaddexp(0.0, -a * z) * y + np.logaddexp(0.0, a * z) * ~y) for a in slopes]
        out.append(round(float(slopes[int(np.argmin(loss))]), 4))
    return out


def reliability(p: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict]:
    """Reliability curve over all AUs: per bin of the published probability, its mean and the
    share of faces whose label is present."""
    known = labels >= 0
    pv, yv = p[known], labels[known] == 1
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        m = (pv >= a) & ((pv < b) if b < 1 else (pv <= b))
        if m.sum():
            out.append({"bin": [round(float(a), 2), round(float(b), 2)], "mean_p": round(float(pv[m].mean()), 4),
                        "share_present": round(float(yv[m].mean()), 4), "n": int(m.sum())})
    return out


def rest_levels(intensity: np.ndarray, neutral: np.ndarray) -> list[float]:
    """Per AU the intensity a resting (crowd-neutral) face reads: the mean over those faces (the
    distribution is skewed to the right, so the median resting face then reads 0 as well)."""
    return [round(float(min(v, 4.9)), 4) for v in np.mean(intensity[np.asarray(neutral, bool)], axis=0)]


def anchored(intensity: np.ndarray, rest) -> np.ndarray:
    """Intensities anchored at rest, as the SDK computes them (``rtatl_sdk.contract.card.anchored``)."""
    return card_anchored(intensity, rest)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    def ranks(x):
        x = np.asarray(x, np.float64)
        order = x.argsort(kind="mergesort")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for v in np.unique(x):  # ties: average rank
            m = x == v
            r[m] = r[m].mean()
        return r
    if len(a) < 3:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1]) if ra.std() > 0 and rb.std() > 0 else float("nan")


# ---------------------------------------------------------------- expressions
def expression_report(logits_or_probs: np.ndarray, votes: np.ndarray, names) -> dict:
    """Accuracy and per-class recall against the plurality vote, the confusion matrix (rows: the
    crowd's plurality, columns: the model's top class) and the cross entropy against the votes,
    over faces with votes and a unique plurality."""
    p = np.asarray(logits_or_probs, np.float64)
    votes = np.asarray(votes, np.float64)
    has = votes[:, 0] >= 0
    top = votes.max(1, keepdims=True)
    unique = (votes >= top - 1e-9).sum(1) == 1
    m = has & unique
    if not m.any():
        return {}
    truth, pred = votes[m].argmax(1), p[m].argmax(1)
    k = len(names)
    conf = np.zeros((k, k), int)
    np.add.at(conf, (truth, pred), 1)
    recall = {n: (round(float(conf[i, i] / conf[i].sum()), 4) if conf[i].sum() else None) for i, n in enumerate(names)}
    ce = float(-(votes[has] * np.log(np.clip(p[has], 1e-9, 1.0))).sum(1).mean())
    return {"faces": int(m.sum()), "accuracy": round(float((truth == pred).mean()), 4), "recall": recall,
            "support": {n: int(conf[i].sum()) for i, n in enumerate(names)},
            "balanced_accuracy": round(float(np.mean([v for v in recall.values() if v is not None])), 4),
            "cross_entropy_vs_votes": round(ce, 4), "confusion": conf.tolist(), "classes": list(names)}


def expression_table(rep: dict, title: str) -> str:
    if not rep:
        return ""
    names = rep["classes"]
    rows = [f"{title}: {rep['faces']} faces, accuracy {rep['accuracy']:.3f}, balanced accuracy "
            f"{rep['balanced_accuracy']:.3f}, cross entropy against the votes {rep['cross_entropy_vs_votes']:.3f}",
            "", "| crowd \\ model | " + " | ".join(names) + " | recall |", "|---|" + "---|" * (len(names) + 1)]
    for i, n in enumerate(names):
        r = rep["recall"][n]
        rows.append(f"| {n} | " + " | ".join(str(v) for v in rep["confusion"][i]) + f" | {'-' if r is None else f'{r:.2f}'} |")
    return "\n".join(rows)
