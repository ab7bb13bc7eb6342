"""The published outputs of a default model, fitted on the validation people: the operating point
(thresholds), readable probabilities (calibration), intensities anchored at rest, and how each
holds on people the fit never saw.

* **Thresholds** (``measures.fit_budget_thresholds``): the best mean F1 against the targets'
  hard labels under a total budget of ``NEUTRAL_BUDGET`` AUs called per neutral face, the
  budget shared between AUs where it buys the most F1. The earlier rule (at most a fixed share of
  neutral faces per AU) stays as the card's ``thresholds_strict``.
* **Calibration** (``measures.fit_calibration``): per AU one slope, so the published probability
  is ``sigmoid(slope * (logit(p) - logit(threshold)))``: 0.5 is the decision threshold and the
  value follows how often the AU is there (log loss against the same labels).
* **Rest** (``measures.rest_levels``): per AU the mean intensity of crowd-neutral faces; the
  published intensity is ``(r - rest) * 5 / (5 - rest)``, clipped to 0-5.

``held_apart`` fits all three on one half of the validation people and judges them on the other
half (identity-disjoint, seeded): that is the number a user can expect, not the fit's own.
"""

from __future__ import annotations

import numpy as np

from rtatl_sdk.contract.au import au_label

from . import measures

#: the budgets of the held-apart trade-off curve in the report (AUs per neutral face)
BUDGETS = (0.1, 0.2, 0.3, 0.5, 0.8)


def fit(outputs: dict, labels: np.ndarray, emotions: np.ndarray, aus, budget: float,
        strict_rates) -> dict:
    """The card's published-output parameters from the validation people's outputs."""
    probs = outputs["probs"]
    neutral = np.asarray(emotions) == "neutral"
    thr, info = measures.fit_budget_thresholds(probs, labels, neutral, budget)
    strict, _ = measures.fit_thresholds(probs, labels, neutral=neutral, max_neutral_rate=strict_rates)
    out = {"thresholds": thr, "thresholds_strict": [float(t) for t in strict],
           "calibration": measures.fit_calibration(probs, labels, thr), "budget": info,
           "neutral_rate_per_au": {au_label(a): r for a, r in zip(aus, info["per_au_neutral_rate"])}}
    if "intensity" in outputs:
        out["intensity_rest"] = measures.rest_levels(outputs["intensity"], neutral)
    return out


def _judge_half(probs, inten, labels, targets, emotions, aus, thr, slopes, rest) -> dict:
    e = np.asarray(emotions)
    neutral, happy = e == "neutral", e == "happiness"
    present = probs >= np.asarray(thr)
    rep = {"faces": int(len(probs)), "neutral_faces": int(neutral.sum()), "happy_faces": int(happy.sum()),
           "neutral_present": round(float(present[neutral].sum(1).mean()), 3) if neutral.any() else None,
           "f1_vs_targets": {au_label(a): round(measures.f1(present[:, j], labels[:, j]), 4) for j, a in enumerate(aus)}}
    rep["f1_vs_targets_mean"] = round(float(np.mean(list(rep["f1_vs_targets"].values()))), 4)
    rep["present_on_happy"] = {au_label(a): round(float(present[happy, list(aus).index(a)].mean()), 3)
                               for a in (12, 6) if a in aus and happy.any()}
    if slopes is not None:
        rep["reliability"] = measures.reliability(measures.calibrated(probs, thr, slopes), labels)
    if inten is not None and rest is not None:
        anchored = measures.anchored(inten, rest)
        rep["intensity_neutral_mean"] = {au_label(a): round(float(anchored[neutral, j].mean()), 3)
                                         for j, a in enumerate(aus)} if neutral.any() else {}
        rep["intensity_neutral_mean_raw"] = {au_label(a): round(float(inten[neutral, j].mean()), 3)
                                             for j, a in enumerate(aus)} if neutral.any() else {}
        if 6 in aus and happy.sum() >= 3:
            j = list(aus).index(6)
            rep["au06_r_spearman_with_evidence_on_happy"] = round(measures.spearman(anchored[happy, j], targets[happy, j]), 4)
    return rep


def held_apart(outputs: dict, labels: np.ndarray, targets: np.ndarray, emotions: np.ndarray, identities: np.ndarray,
               aus, budget: float, seed: int = 0) -> dict:
    """Fit on one half of the people, judge on the other: the chosen budget in full, and the
    trade-off curve over ``BUDGETS``."""
    a, b = measures.halves(identities, seed)
    probs, inten = outputs["probs"], outputs.get("intensity")
    e = np.asarray(emotions)
    rows = []
    chosen = None
    for bud in sorted(set(BUDGETS) | {budget}):
        thr, _ = measures.fit_budget_thresholds(probs[a], labels[a], e[a] == "neutral", bud)
        main = bud == budget
        slopes = measures.fit_calibration(probs[a], labels[a], thr) if main else None
        rest = measures.rest_levels(inten[a], e[a] == "neutral") if main and inten is not None else None
        rep = _judge_half(probs[b], None if inten is None else inten[b], labels[b], targets[b], e[b], aus, thr, slopes, rest)
        rows.append({"budget": bud, "neutral_present": rep["neutral_present"], "f1_vs_targets_mean": rep["f1_vs_targets_mean"],
                     "present_on_happy": rep["present_on_happy"]})
        if main:
            chosen = rep
    return {"fit_people": int(len(set(identities[a]))), "people": int(len(set(identities[b]))), "chosen": chosen,
            "tradeoff": rows}


def tradeoff_table(held: dict) -> str:
    rows = [f"Held apart: fitted on {held['fit_people']} validation people, judged on {held['people']} others "
            f"({held['chosen']['faces']} faces):", "",
            "| budget (AUs per neutral face, fit half) | AUs present per neutral face | mean F1 vs targets | "
            "AU12 on happy faces | AU06 on happy faces |", "|---|---|---|---|---|"]
    for r in held["tradeoff"]:
        h = r["present_on_happy"]
        rows.append(f"| {r['budget']} | {r['neutral_present']} | {r['f1_vs_targets_mean']:.3f} | "
                    f"{h.get('AU12', float('nan')):.2f} | {h.get('AU06', float('nan')):.2f} |")
    c = held["chosen"]
    rows += ["", "Reliability of the published `AUxx_p` on the held-apart half (all AUs, against the targets' hard labels):",
             "", "| bin | mean AUxx_p | share with the AU | faces x AUs |", "|---|---|---|---|"]
    rows += [f"| {r['bin'][0]:.1f}-{r['bin'][1]:.1f} | {r['mean_p']:.3f} | {r['share_present']:.3f} | {r['n']} |"
             for r in c.get("reliability", [])]
    if c.get("intensity_neutral_mean"):
        aus = list(c["intensity_neutral_mean"])
        rows += ["", "Mean `AUxx_r` on the held-apart half's neutral faces (anchored at rest; raw head output below):", "",
                 "| AU | " + " | ".join(x[2:] for x in aus) + " |", "|---|" + "---|" * len(aus),
                 "| anchored | " + " | ".join(f"{c['intensity_neutral_mean'][x]:.2f}" for x in aus) + " |",
                 "| raw | " + " | ".join(f"{c['intensity_neutral_mean_raw'][x]:.2f}" for x in aus) + " |"]
        if "au06_r_spearman_with_evidence_on_happy" in c:
            rows.append(f"\nSpearman of AU06_r with AU06's evidence (its target) on the half's {c['happy_faces']} happy "
                        f"faces: {c['au06_r_spearman_with_evidence_on_happy']:.3f}")
    return "\n".join(rows)
