"""Results-table arithmetic against hand-computed values, and tools/compare_runs.py on
hand-written metrics files."""

from __future__ import annotations

import json
import math

import pytest
from helpers import load_tool

from renderlss.eval.run_summary import (
    Spread,
    format_spread,
    gap_share,
    read_metrics,
    spread,
    training_cost,
)


def test_spread_is_mean_and_half_range_of_the_finite_values():
    assert spread([10.0, 14.0, math.nan]) == Spread(12.0, 2.0, 2)
    assert spread([3.0]) == Spread(3.0, 0.0, 1)
    assert spread([math.nan]).n == 0
    assert format_spread(Spread(12.0, 2.0, 2), 1) == "12.0 ± 2.0"
    assert format_spread(Spread(3.0, 0.0, 1), 2) == "3.00"


def test_gap_share_by_hand():
    assert gap_share(10.0, 20.0, 15.0) == 0.5
    assert gap_share(10.0, 20.0, 10.0) == 0.0
    assert gap_share(10.0, 20.0, 25.0) == 1.5
    assert math.isnan(gap_share(5.0, 5.0, 5.0))


def _write(path, **metrics):
    path.write_text(json.dumps({"metrics": metrics}))
    return str(path)


def test_compare_runs_table(tmp_path, capsys):
    tool = load_tool("compare_runs")
    a = [_write(tmp_path / f"a{i}.json", m=v) for i, v in enumerate((10.0, 12.0))]
    c = [_write(tmp_path / f"c{i}.json", m=v) for i, v in enumerate((20.0, 22.0))]
    b = [_write(tmp_path / f"b{i}.json", m=v, x=None) for i, v in enumerate((14.0, 18.0))]
    rows = [f"a={','.join(a)}", f"c={','.join(c)}", f"b={','.join(b)}"]
    argv = [arg for row in rows for arg in ("--row", row)]
    assert tool.main([*argv, "--metrics", "m", "x", "--gap", "a", "c", "--percent"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # Gap 11 -> 21; b's runs recover (14 - 11) / 10 = 0.3 and (18 - 11) / 10 = 0.7.
    assert lines[4] == "| b | 2 | 16.00 ± 2.00 | – | 0.50 ± 0.20 |"
    assert lines[2] == "| a | 2 | 11.00 ± 1.00 | – | 0.00 ± 0.10 |"


def test_unreadable_metrics_file_is_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        read_metrics(bad)
    (tmp_path / "other.json").write_text("[]")
    with pytest.raises(ValueError, match="no 'metrics'"):
        read_metrics(tmp_path / "other.json")


def test_compare_runs_shows_fractions_in_percent(tmp_path, capsys):
    tool = load_tool("compare_runs")
    run = _write(tmp_path / "r.json", RayIoU=0.125, **{"depth/oracle/abs_rel": 0.25})
    assert tool.main(["--row", f"r={run}", "--metrics", "RayIoU", "depth/oracle/abs_rel"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| r | 1 | 12.50 | 0.250 |"


def test_training_cost_is_the_median_speed_and_the_peak_memory(tmp_path, capsys):
    runs = []
    for seed, speeds in enumerate(((0.2, 1.0, 0.9, 1.1), (0.3, 2.0, 1.9))):
        folder = tmp_path / f"run{seed}"
        folder.mkdir()
        steps = [
            dict(step=i + 1, samples_per_s=s, memory_mb=100.0 * (i + 1) + seed)
            for i, s in enumerate(speeds)
        ]
        lines = [json.dumps(step) for step in steps] + [json.dumps(dict(step=9, lr=0.1))]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        runs.append(_write(folder / "metrics.json", m=1.0))
    # Run 0: median of 0.2, 0.9, 1.0, 1.1 = 0.95, peak 400; run 1: median 1.9, peak 301.
    assert training_cost(tmp_path / "run0" / "metrics.jsonl") == {
        "train/samples_per_s": pytest.approx(0.95),
        "train/peak_memory_mb": 400.0,
    }
    tool = load_tool("compare_runs")
    assert tool.main(["--row", f"r={','.join(runs)}", "--metrics", "m", "--training-cost"]) == 0
    assert (
        capsys.readouterr().out.splitlines()[2]
        == "| r | 2 | 1.00 ± 0.00 | 1.425 ± 0.475 | 350.500 ± 49.500 |"
    )
    (tmp_path / "run1" / "metrics.jsonl").write_text(json.dumps(dict(step=1, lr=0.1)))
    with pytest.raises(ValueError, match="run1/metrics.jsonl: no step"):
        training_cost(tmp_path / "run1" / "metrics.jsonl")
