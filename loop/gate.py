"""The promotion rule (pure): a challenger replaces the champion only if it is at least as good on the
same held-out split, plus a margin."""

from __future__ import annotations


def should_promote(challenger_map: float, champion_map: float | None, margin: float = 0.0) -> tuple[bool, str]:
    """(promote?, reason). No champion yet: the first version becomes champion."""
    if champion_map is None:
        return True, "first version"
    if challenger_map != challenger_map:  # NaN
        return False, "challenger mAP is NaN"
    needed = champion_map + margin
    if challenger_map >= needed:
        return True, f"mAP {challenger_map:.4f} >= champion {champion_map:.4f} + margin {margin:.4f}"
    return False, f"mAP {challenger_map:.4f} < champion {champion_map:.4f} + margin {margin:.4f}"
