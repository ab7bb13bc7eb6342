"""The AU catalogue: the single place that names action units and the dataset AU sets."""

from __future__ import annotations

#: FACS number -> name (only the AUs used by the supported datasets).
AU_NAMES: dict[int, str] = {
    1: "Inner Brow Raiser",
    2: "Outer Brow Raiser",
    4: "Brow Lowerer",
    5: "Upper Lid Raiser",
    6: "Cheek Raiser",
    7: "Lid Tightener",
    9: "Nose Wrinkler",
    10: "Upper Lip Raiser",
    12: "Lip Corner Puller",
    14: "Dimpler",
    15: "Lip Corner Depressor",
    17: "Chin Raiser",
    20: "Lip Stretcher",
    23: "Lip Tightener",
    24: "Lip Pressor",
    25: "Lips Part",
    26: "Jaw Drop",
    28: "Lip Suck",
    45: "Blink",
}

#: The AU sets of the two benchmark datasets (paper sec. 4.1), and OpenFace 2.2's 18 AUs (the set
#: its users' scripts read as AUxx_r / AUxx_c; AU28 has no intensity there).
AU_SETS: dict[str, tuple[int, ...]] = {
    "BP4D": (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24),
    "DISFA": (1, 2, 4, 6, 9, 12, 25, 26),
    "OPENFACE": (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45),
}


def au_label(number: int) -> str:
    """``12 -> "AU12"``; two digits, the OpenFace convention (``AU01``... ``AU26``)."""
    return f"AU{int(number):02d}"


def au_number(label: str | int) -> int:
    """Parse ``"AU12"``, ``"AU1"``, ``"12"`` or ``12`` into a known FACS number."""
    from ..errors import InputError

    text = str(label).strip().upper()
    text = text.removeprefix("AU")
    try:
        number = int(text)
    except ValueError:
        raise InputError("AU", f"{label!r} is not an AU name like 'AU12'") from None
    if number not in AU_NAMES:
        known = ", ".join(au_label(n) for n in AU_NAMES)
        raise InputError("AU", f"{label!r} is not a supported AU (known: {known})")
    return number

