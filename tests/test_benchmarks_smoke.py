"""The benchmarks run end to end: load.py (SQLite, the echo and floor apps, tiny load) and bench_wordlists.py
(a small sample); no timing is asserted."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from tests.servers import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_load_benchmark_runs_and_reconciles_rows():
    done = subprocess.run(
        [sys.executable, "benchmarks/load.py", "--duration", "1", "--connections", "2", "--skip-postgres"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backend        scenario        req/s   p50 ms   p99 ms" in done.stdout
    # The floor app ran on SQLite and answered only 201s.
    floor_row = next(line for line in done.stdout.splitlines() if line.startswith("floor-sqlite   submission"))
    assert re.findall(r"\b(\d{3}):\d+", floor_row) == ["201"], floor_row
    assert "floor (sqlite): the least a submission must do reaches" in done.stdout
    assert "rows == 201s  sqlite:" in done.stdout
    assert "-> PASS" in done.stdout.split("rows == 201s  sqlite:")[1].splitlines()[0]


def test_wordlist_benchmark_runs_on_a_small_sample():
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_wordlists.py", "--smoke", "--matcher", "moderation/services/wordlists.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "matcher from moderation/services/wordlists.py" in done.stdout
    assert " terms per list  matcher    compile     median        p99        max" in done.stdout
    assert re.search(r"^\s+30 +this +[\d.]+ ms +[\d.]+ µs", done.stdout, re.M), done.stdout
    assert re.search(r"^all worst cases +[\d.]+ ms$", done.stdout, re.M), done.stdout
