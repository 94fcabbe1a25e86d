"""Compare repeated runs: a Markdown table of metrics (mean ± half range over the seeds) from
the JSON files that ``tools/test.py --out`` writes, one row per setting.

Example (two seeds per row; the share of the gap from row "a" to row "c" that each row
recovers, on the first metric):
    python tools/compare_runs.py --gap a c \\
        --row a=runs/a_s0/metrics.json,runs/a_s1/metrics.json \\
        --row c=runs/c_s0/metrics.json,runs/c_s1/metrics.json \\
        --row b=runs/b_s0/metrics.json,runs/b_s1/metrics.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from renderlss.eval.run_summary import (  # noqa: E402
    TRAINING_COST_KEYS,
    format_spread,
    gap_share,
    read_metrics,
    row_spreads,
    spread,
    training_cost,
)

DEFAULT_METRICS = [
    "mIoU_17_classes",
    "geometry_IoU",
    "RayIoU",
    "depth/oracle/abs_rel",
    "depth/lidar/abs_rel",
]
# Fractions that tables show in percent.
PERCENT_METRICS = ["mIoU_17_classes", "mIoU_15_classes", "geometry_IoU", "RayIoU"]


def parse_row(text: str) -> tuple[str, list[str]]:
    """``NAME=PATH[,PATH...]`` -> (name, paths)."""
    name, sep, paths = text.partition("=")
    if not sep or not name or not paths:
        raise argparse.ArgumentTypeError(f"--row {text!r}: expected NAME=PATH[,PATH...]")
    return name, paths.split(",")


def run_record(path: str, with_cost: bool) -> dict[str, float]:
    """The metrics of one run, with its training cost (:func:`training_cost`) on request."""
    record = read_metrics(path)
    if with_cost:
        record.update(training_cost(Path(path).parent / "metrics.jsonl"))
    return record


def in_percent(
    rows: list[tuple[str, list[dict[str, float]]]], keys: set[str]
) -> list[tuple[str, list[dict[str, float]]]]:
    """``rows`` with the metrics named in ``keys`` multiplied by 100."""
    return [
        (name, [{k: v * 100 if k in keys else v for k, v in run.items()} for run in runs])
        for name, runs in rows
    ]


def table(
    rows: list[tuple[str, list[dict[str, float]]]], keys: list[str], gap: list[str] | None
) -> str:
    """The Markdown table of ``rows`` (name, one metrics dict per run) over ``keys``, with a
    gap-share column on ``keys[0]`` when ``gap`` names the low and the high row."""
    spreads = {name: row_spreads(runs, keys) for name, runs in rows}
    header = ["row", "runs", *keys]
    if gap:
        low, high = (spreads[g][keys[0]].mean for g in gap)
        header.append(f"share of the {gap[0]}→{gap[1]} gap ({keys[0]})")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, runs in rows:
        cells = [name, str(len(runs))]
        cells += [format_spread(spreads[name][k], 3 if "/" in k else 2) for k in keys]
        if gap:
            shares = [gap_share(low, high, run.get(keys[0], float("nan"))) for run in runs]
            cells.append(format_spread(spread(shares), 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--row",
        type=parse_row,
        action="append",
        required=True,
        help="NAME=PATH[,PATH...]: a row and its runs' metrics files (repeat per row)",
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=DEFAULT_METRICS,
        help="metric keys, the first one for the gap share (default: %(default)s)",
    )
    parser.add_argument(
        "--percent",
        nargs="*",
        default=PERCENT_METRICS,
        help="metrics shown in percent (default: %(default)s)",
    )
    parser.add_argument(
        "--training-cost",
        action="store_true",
        help="add the median samples/s and peak memory (MB) of each run's training, read "
        "from the metrics.jsonl next to its metrics file (the run's train.work_dir)",
    )
    parser.add_argument(
        "--gap", nargs=2, metavar=("LOW", "HIGH"), help="rows whose gap the others recover"
    )
    args = parser.parse_args(argv)
    names = [name for name, _ in args.row]
    if args.gap and not set(args.gap) <= set(names):
        parser.error(f"--gap {' '.join(args.gap)}: rows are {names}")
    try:
        rows = [
            (name, [run_record(p, args.training_cost) for p in paths]) for name, paths in args.row
        ]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    keys = args.metrics + (list(TRAINING_COST_KEYS) if args.training_cost else [])
    print(table(in_percent(rows, set(args.percent)), keys, args.gap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
