"""benchmarks/cv_germeval.py on two small files of our own: per-file figures and the routing table."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np

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
    table = result["routing"]
    assert table["rows"] == 100 and table["toxic_share"] == 0.4 and table["rows_from"] == "the comment rows"
    assert set(table["approve"]) == {"< 0.10", "< 0.15", "< 0.20", "< 0.25", "< 0.30"}
    thresholds = table["default_thresholds"]
    assert 0 <= thresholds["approve_threshold"] <= 0.5 <= thresholds["reject_threshold"] <= 1


def test_routing_table_figures_on_scores_worked_out_by_hand():
    spec = importlib.util.spec_from_file_location("cv_germeval", ROOT / "benchmarks" / "cv_germeval.py")
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    # Ten comments (4 toxic) and two tweets that must not count.
    labels = np.array([0, 0, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1])
    scores = np.array([0.05, 0.12, 0.12, 0.14, 0.22, 0.40, 0.55, 0.60, 0.82, 0.91, 0.01, 0.99])
    domains = ["comment"] * 10 + ["tweet"] * 2
    table = cv.routing_table(labels, scores, domains)
    assert table["rows"] == 10 and table["toxic_share"] == 0.4
    # Below 0.15: four comments, one of them toxic. At 10% toxic: 0.1 * 1/4 + 0.9 * 3/6 = 0.475 published,
    # of which 0.025 / 0.475 = 5.3% toxic.
    assert table["approve"]["< 0.15"] == {"published": 0.4, "toxic_among_published": 0.25,
                                           "at_10%_toxic": {"published": 0.475, "toxic_among_published": 0.053}}
    assert table["approve"]["< 0.10"]["published"] == 0.1 and table["approve"]["< 0.10"]["toxic_among_published"] == 0
    assert table["reject"][">= 0.80"] == {"rejected": 0.2, "precision": 1.0}
    assert table["reject"][">= 0.95"] == {"rejected": 0.0, "precision": None}
    assert cv.routing_table(labels, scores, ["tweet"] * 12)["rows_from"].startswith("all rows")
