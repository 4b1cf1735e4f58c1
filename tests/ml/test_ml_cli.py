"""CLI round trip: train -> evaluate (with report) -> score."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from moderation.cli.ml import evaluate, score, train
from moderation.ml import load_model


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
        assert set(row) == {"toxicity", "offensive", "category", "highlights", "model_version"}
        assert row["model_version"] == summary["version"]
        for h in row["highlights"]:
            assert text[h["start"]:h["end"]] == h["text"]


def test_score_reads_stdin_and_model_from_env(cli, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("MODERATION_MODEL_DIR", str(tiny_model_dir))
    result = CliRunner().invoke(cli, ["score"], input='{"text": "Halt die Fresse"}\n{"text": "Danke"}\n')
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2 and all(0 <= row["toxicity"] <= 1 for row in rows)
    assert {row["model_version"] for row in rows} == {load_model(tiny_model_dir).version}


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


# Each folder a command reads or writes, by its one name: --model (a model folder to read), --store (the
# model store), --out (a model folder written), --report (a report folder written).
FOLDER_OPTIONS = [
    (["train"], ["--out"]),
    (["evaluate"], ["--model", "--report"]),
    (["score"], ["--model"]),
    (["retrain"], ["--report", "--store"]),
    (["models", "list"], ["--store"]),
    (["models", "promote"], ["--store"]),
    (["models", "rollback"], ["--store"]),
    (["models", "import"], ["--store"]),
    (["models", "export"], ["--out", "--store"]),
]


def _command(path: list[str]) -> click.Command:
    from moderation.cli import cli as root

    command = root
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize(("path", "names"), FOLDER_OPTIONS, ids=[" ".join(p) for p, _ in FOLDER_OPTIONS])
def test_every_command_calls_its_folders_by_the_same_names(path, names):
    command = _command(path)
    folders = [p for p in command.params if isinstance(p, click.Option)
               and isinstance(p.type, click.Path) and not p.type.file_okay]
    assert sorted(p.opts[0] for p in folders) == names
    shown = CliRunner().invoke(command, ["--help"], prog_name=" ".join(path)).stdout
    assert all(name in shown for name in names)
    assert [old for p in folders for old in p.opts[1:] if old in shown] == []  # old spellings stay hidden
    assert "--model-dir" not in shown


def test_every_command_is_in_the_table():
    from moderation.cli import cli as root

    listed = {" ".join(path) for path, _ in FOLDER_OPTIONS}
    models = {f"models {name}" for name in root.commands["models"].commands}
    assert {"train", "evaluate", "score", "retrain"} | models == listed


@pytest.mark.parametrize(("path", "args", "expected"), [
    (["models", "list"], ["--model-dir", "s"], {"store": "s"}),
    (["models", "promote"], ["v", "--model-dir", "s"], {"store": "s", "version": "v"}),
    (["models", "rollback"], ["--model-dir", "s"], {"store": "s"}),
    (["retrain"], ["--model-dir", "s", "--out", "r"], {"store": "s", "report_dir": "r"}),
    (["retrain"], ["--store", "s", "--report", "r"], {"store": "s", "report_dir": "r"}),
])
def test_old_spellings_still_parse(path, args, expected):
    params = _command(path).make_context(path[-1], list(args)).params
    assert {key: params[key] for key in expected} == expected


def test_score_and_evaluate_read_the_serving_model_by_default(cli, tiny_model_dir, tiny_jsonl, tmp_path,
                                                             monkeypatch):
    from moderation.ml import train_and_save
    from moderation.ml.registry import ModelStore

    texts, labels = ["Danke, sehr gut", "Du Idiot", "Schöner Tag", "Halt die Fresse"], [0, 1, 0, 1]
    train_and_save(texts * 3, labels * 3, tmp_path / "other", seed=2)
    store = ModelStore(tmp_path / "store", tiny_model_dir)
    monkeypatch.setenv("MODERATION_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("MODERATION_MODEL_STORE", str(store.root))
    runner = CliRunner()

    def served() -> tuple[str, str]:
        evaluated = runner.invoke(cli, ["evaluate", "--data", str(tiny_jsonl)])
        scored = runner.invoke(cli, ["score"], input='{"text": "Du Idiot"}\n')
        assert evaluated.exit_code == 0 and scored.exit_code == 0, evaluated.output + scored.output
        return json.loads(evaluated.stdout)["model_version"], json.loads(scored.stdout)["toxicity"]

    shipped_version, shipped_score = served()
    assert shipped_version == store.shipped_version()
    store.promote(store.add(tmp_path / "other"), reason="test")
    version, toxicity = served()
    assert version == store.pointer() != shipped_version
    assert toxicity == store.load_serving().score("Du Idiot").toxicity != shipped_score
