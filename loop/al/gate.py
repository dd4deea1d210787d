"""When to retrain and when to promote (pure): a retrain is due after enough new submitted annotations or an
interval; a challenger replaces the champion only if it is at least as good on the same held-out split,
plus a margin."""

from __future__ import annotations


def should_promote(challenger_map: float, champion_map: float | None, margin: float = 0.0, metric: str = "bbox"
                   ) -> tuple[bool, str]:
    """(promote?, reason). No champion yet: the first version becomes champion. `metric` names the mAP
    compared (bbox, or segm for instance segmentation), for the reason."""
    if champion_map is None:
        return True, "first version"
    if challenger_map != challenger_map:  # NaN
        return False, f"challenger {metric} mAP is NaN"
    needed = champion_map + margin
    if challenger_map >= needed:
        return True, f"{metric} mAP {challenger_map:.4f} >= champion {champion_map:.4f} + margin {margin:.4f}"
    return False, f"{metric} mAP {challenger_map:.4f} < champion {champion_map:.4f} + margin {margin:.4f}"


def gate_metric(asked: str, challenger_segments: bool, champion_segments: bool | None) -> str:
    """Which held-out mAP decides a promotion: `asked` (bbox or segm), or with `auto` the task's own, segm
    when the challenger segments and the champion (if any) does too, else bbox. Asking for segm of a
    model that has no masks is an error that says so."""
    if asked not in ("auto", "bbox", "segm"):
        raise ValueError(f"registry.gate_metric={asked!r}: use auto, bbox or segm")
    if asked == "segm" and not (challenger_segments and champion_segments is not False):
        raise ValueError("registry.gate_metric=segm needs instance masks from the new version and the champion; "
                         "use auto or bbox for box models")
    if asked == "auto":
        return "segm" if challenger_segments and champion_segments is not False else "bbox"
    return asked


def due(submitted: int, trained: int, min_new: int | None, interval_s: float | None, since_last_s: float
        ) -> str | None:
    """Why a retrain is due now, or None (pure)."""
    new = submitted - trained
    if min_new is not None and new >= min_new:
        return f"{new} new submitted tasks (threshold {min_new})"
    if interval_s is not None and since_last_s >= interval_s and new > 0:
        return f"interval of {interval_s:.0f} s elapsed with {new} new submitted tasks"
    return None
