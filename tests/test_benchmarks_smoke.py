"""benchmarks/load.py runs end to end (SQLite, the echo and floor apps, tiny load); no timing is asserted."""

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
