"""benchmarks/cv_germeval.py on two small files of our own: per-file figures and the routing table."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.german_corpus import friendly, toxic
from tests.servers import ROOT


def test_cv_benchmark_prints_per_file_figures_and_the_routing_table(tmp_path):
    tweets = tmp_path / "tweets.txt"
    tweets.write_text("".join(f"{t}\tOTHER\tOTHER\n" for t in friendly(60, seed=5))
                      + "".join(f"{t}\tOFFENSE\tINSULT\n" for t in toxic(40, seed=5)), encoding="utf-8")
    comments = tmp_path / "comments.jsonl"
    rows = [{"text": t, "label": 0} for t in friendly(60, seed=6)]
    rows += [{"text": t, "label": 1} for t in toxic(40, seed=6)]
    comments.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    done = subprocess.run([sys.executable, "benchmarks/cv_germeval.py", "--data", str(tweets), "--data", str(comments),
                           "--routing", "--jobs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["rows"] == 200 and result["params"]["domain_adaptation"] is True
    assert set(result["macro_f1_at_0.5_by_file"]) == {"tweets.txt", "comments.jsonl"}
    table = result["routing_on_comment_rows"]
    assert table["rows"] == 100 and table["toxic_share"] == 0.4  # the comment file's rows only
    shares = [row["published"] for row in table["approve"].values()]
    assert shares == sorted(shares) and all(0 <= share <= 1 for share in shares)
    for row in table["approve"].values():
        rate = row["at_10%_toxic"]["toxic_among_published"]
        assert rate is None or rate <= row["toxic_among_published"] + 1e-9  # fewer toxic comments, less leak
    thresholds = table["default_thresholds"]
    assert 0 <= thresholds["approve_threshold"] <= 0.5 <= thresholds["reject_threshold"] <= 1
