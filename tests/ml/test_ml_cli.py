"""CLI round trip: train -> evaluate (with report) -> score."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from moderation.cli.ml import evaluate, score, train


@pytest.fixture
def cli():
    """Return a click group holding the ML commands, as `python -m moderation` will."""
    group = click.Group("moderation")
    for command in (train, evaluate, score):
        group.add_command(command)
    return group


def test_train_evaluate_score_round_trip(cli, tiny_jsonl, tmp_path):
    runner = CliRunner()
    out = tmp_path / "model"
    result = runner.invoke(cli, ["train", "--data", str(tiny_jsonl), "--out", str(out),
                                 "--seed", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 12
    assert "cross-validat" in result.stderr
    assert (out / "model.joblib").is_file() and (out / "metadata.json").is_file()

    report = tmp_path / "report"
    result = runner.invoke(cli, ["evaluate", "--model", str(out), "--data", str(tiny_jsonl),
                                 "--report", str(report)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["rows"] == 12
    assert 0 <= metrics["macro_f1"] <= 1
    assert set(metrics["per_class"]) == {"other", "offensive"}
    assert metrics["confusion_matrix"]["labels"] == ["other", "offensive"]
    for name in ("index.html", "precision_recall.png", "score_histogram.png",
                 "confusion_matrix.png", "threshold_table.png"):
        assert (report / name).is_file()

    lines = tmp_path / "in.jsonl"
    lines.write_text('{"text": "Du bist ein I d i o t"}\n\n{"text": "Danke dir!"}\n',
                     encoding="utf-8")
    result = runner.invoke(cli, ["score", "--model", str(out), "--input", str(lines)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2
    for row, text in zip(rows, ["Du bist ein I d i o t", "Danke dir!"], strict=True):
        assert set(row) == {"toxicity", "offensive", "category", "highlights"}
        for h in row["highlights"]:
            assert text[h["start"]:h["end"]] == h["text"]


def test_score_reads_stdin_and_model_from_env(cli, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MODERATION_MODEL_DIR", str(tiny_model_dir))
    result = CliRunner().invoke(cli, ["score"], input='{"text": "Halt die Fresse"}\n')
    assert result.exit_code == 0, result.output
    assert 0 <= json.loads(result.stdout)["toxicity"] <= 1


@pytest.mark.parametrize(("line", "message"), [
    ("{nope", "invalid JSON"),
    ('{"txt": "x"}', "needs a string field 'text'"),
])
def test_score_rejects_bad_lines(cli, tiny_model_dir, line, message):
    result = CliRunner().invoke(cli, ["score", "--model", str(tiny_model_dir)], input=line + "\n")
    assert result.exit_code == 1
    assert ":1:" in result.output and message in result.output


def test_commands_report_broken_inputs(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": "vielleicht"}\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--data", str(bad), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "bad.jsonl:1" in result.output
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(tmp_path / "none"),
                                      "--data", str(bad)])
    assert result.exit_code == 1 and "model folder not found" in result.output
