"""The site-replay benchmark end to end on a small file the test writes: real gunicorn, the real retrain CLI
between batches, the promoted model hot-reloaded by the running service. No figure is asserted, only the shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.german_corpus import friendly, toxic
from tests.servers import ROOT, service_env

pytestmark = pytest.mark.slow


def test_replay_runs_two_batches_retrains_between_them_and_prints_the_table(tmp_path: Path, tiny_model_dir: Path):
    data = tmp_path / "site.csv"
    rows = [(t, 0) for t in friendly(160, seed=3)] + [(t, 1) for t in toxic(160, seed=3)]
    data.write_text("text,label\n" + "".join(f'"{t}",{y}\n' for t, y in rows), encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "benchmarks/replay_site.py", "--data", str(data), "--model", str(tiny_model_dir),
         "--removal-rate", "0.3", "--batches", "2", "--out", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT, env=service_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"replay of {data} at a 30% removal rate, seed 0, 2 batches, audit rate 0.02"
    header, rule, first, second = lines[1:5]
    assert header.startswith("| batch | comments | model | approve < | reject ≥ |")
    assert rule == "|" + "---|" * 13
    assert [line.count("|") for line in (first, second)] == [14, 14]
    figures = json.loads((out / "replay.json").read_text(encoding="utf-8"))
    one, two = figures["rows"]
    # All 160 kept comments and 69 removed ones (30 %), in two batches of 115 and 114.
    assert (one["comments"], two["comments"]) == (115, 114) and one["removed"] + two["removed"] == 69
    assert one["batch"] == 1 and first.startswith(f"| 1 | 115 | {one['model']} |")
    # The tiny starting model decides nothing alone: the labels decide the whole first batch, retrain learns from
    # them and promotes, and the running gunicorn serves the new version in the second batch.
    assert one["automation"] == 0.0 and one["decided_by_labels"] == 115
    assert 0.0 <= one["serving_auc"] <= 1.0 and f"| {one['serving_auc']:.3f} | promoted " in first
    assert one["retrain"].startswith("promoted ") and one["retrain_result"]["promoted"] is True
    assert two["model"] == one["retrain_result"]["candidate"] != one["model"]
    assert two["versions"] == [two["model"]] and two["retrain"] == "–"
    assert (out / "replay.png").stat().st_size > 0 and (out / "retrain-1" / "index.html").is_file()
