"""Merge several stage=simulate runs into one table, plot and summary.

A five-strategy benchmark on a CPU takes hours; running it in parts (random plus two strategies, then
random plus two others) is easier to fit in, and every part carries the control. Within one dataset and
recipe, training is deterministic per seed, so the parts' control curves must be identical: that is
checked, and a part made with other settings (a different recipe, data or seeds) is refused. One strategy
run in two variants (class_balanced_entropy with and without difficulty weights) gives two curves, named
"strategy (variant)"; results.csv keeps the two columns.

    .venv/bin/python -m loop.stages.simulate_merge runs/simulate/A runs/simulate/B --out runs/simulate/merged
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

from loop.common.errors import LoopError
from loop.stages.simulate_report import FIELDS, describe, write_report

log = logging.getLogger(__name__)


def merge_rows(parts: list[list[dict]], tolerance: float = 1e-9) -> list[dict]:
    """Rows of all parts, one per (strategy, variant, seed, labeled); a key that two parts both measured must
    have the same mAP, else the parts are not comparable (pure). Rows written before results.csv had a variant
    column count as variant ""."""
    merged: dict[tuple, dict] = {}
    for i, rows in enumerate(parts):
        for row in rows:
            row = {**row, "variant": row.get("variant") or ""}
            key = (row["strategy"], row["variant"], int(row["seed"]), int(row["labeled"]))
            if key in merged and abs(float(merged[key]["mAP"]) - float(row["mAP"])) > tolerance:
                raise LoopError(f"part {i + 1} disagrees with an earlier part on {curve_name(row)}, seed {key[2]}, "
                                f"{key[3]} labels (mAP {merged[key]['mAP']} vs {row['mAP']}): the runs were made "
                                "with different data, seeds or training settings and cannot be merged")
            merged.setdefault(key, row)
    return sorted(merged.values(), key=lambda r: (r["strategy"] != "random", r["strategy"], r["variant"],
                                                  int(r["seed"]), int(r["labeled"])))


def curve_name(row: dict) -> str:
    return f"{row['strategy']} ({row['variant']})" if row.get("variant") else str(row["strategy"])


def one_curve_per_variant(rows: list[dict]) -> list[dict]:
    """The rows as the report draws them: a strategy present in more than one variant is named
    "strategy (variant)" per variant, so each gets its own curve; every other strategy keeps its name (pure)."""
    variants: dict[str, set] = {}
    for row in rows:
        variants.setdefault(row["strategy"], set()).add(row.get("variant") or "")
    return [{**row, "strategy": curve_name(row)} if len(variants[row["strategy"]]) > 1 else row for row in rows]


def read_results(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        raise LoopError(f"{path} does not exist; pass the folders stage=simulate wrote (runs/simulate/<time>)")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def merge(run_dirs: list[Path], out: Path) -> dict:
    """Write the merged results.csv, summary.json and curves.png into `out`; returns the summary."""
    rows = merge_rows([read_results(d) for d in run_dirs])
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return write_report(one_curve_per_variant(rows), out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="folders written by stage=simulate")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        summary = merge(args.runs, args.out)
    except LoopError as exc:
        raise SystemExit(f"error: {exc}") from None
    for line in describe(summary):
        log.info(line)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
