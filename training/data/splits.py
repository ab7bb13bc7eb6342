"""The standard subject-independent 3-fold splits (facts/datasets.md sec. 3).

Fold k (1, 2, 3) tests on part k and trains on the other two parts (FG-Net numbering; note that
ME-GraphAU numbers its folds the other way round).
"""

from __future__ import annotations

import logging

from rtatl_sdk.errors import InputError

log = logging.getLogger(__name__)

PARTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "BP4D": (
        tuple(["F001", "F002", "F008", "F009", "F010", "F016", "F018", "F023", "M001", "M004", "M007", "M008", "M012", "M014"]),
        tuple(["F003", "F005", "F011", "F013", "F020", "F022", "M002", "M005", "M010", "M011", "M013", "M016", "M017", "M018"]),
        tuple(["F004", "F006", "F007", "F012", "F014", "F015", "F017", "F019", "F021", "M003", "M006", "M009", "M015"]),
    ),
    "DISFA": (
        tuple(["SN001", "SN002", "SN009", "SN010", "SN016", "SN026", "SN027", "SN030", "SN032"]),
        tuple(["SN006", "SN011", "SN012", "SN013", "SN018", "SN021", "SN024", "SN028", "SN031"]),
        tuple(["SN003", "SN004", "SN005", "SN007", "SN008", "SN017", "SN023", "SN025", "SN029"]),
    ),
}


def fold_subjects(dataset: str, fold: int) -> tuple[list[str], list[str]]:
    """(train subjects, test subjects) of ``fold`` (1-3) of ``dataset``."""
    key = dataset.upper()
    if key not in PARTS:
        raise InputError("dataset", f"{dataset!r} has no standard split (known: {sorted(PARTS)})")
    if fold not in (1, 2, 3):
        raise InputError("fold", f"must be 1, 2 or 3, got {fold!r}")
    parts = PARTS[key]
    test = list(parts[fold - 1])
    train = [s for i, p in enumerate(parts) if i != fold - 1 for s in p]
    return train, test


def check_present(dataset: str, fold: int, present: set[str], strict: bool = False) -> tuple[list[str], list[str]]:
    """Subjects of the fold that exist in the data; missing ones are logged with a count.

    With ``strict`` any missing subject is an error; a fold with no test or no training
    subject at all is always an error.
    """
    train, test = fold_subjects(dataset, fold)
    out = []
    for role, subjects in (("train", train), ("test", test)):
        have = [s for s in subjects if s in present]
        missing = [s for s in subjects if s not in present]
        if missing:
            msg = f"{dataset} fold {fold}: {len(missing)} of {len(subjects)} {role} subjects missing from the data: {' '.join(missing)}"
            if strict:
                raise InputError("data", msg)
            log.warning(msg)
        if not have:
            raise InputError("data", f"{dataset} fold {fold}: none of the {role} subjects is in the data ({' '.join(subjects)})")
        out.append(have)
    return out[0], out[1]
