"""CLI round trip: train -> evaluate (with report) -> score."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from moderation.cli.common import ProgressOutput
from moderation.cli.ml import evaluate, score, train
from moderation.ml import load_model
from tests.servers import ROOT, service_env


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
    # Not a terminal: the counted phases are plain lines.
    fits = [line for line in result.stderr.splitlines() if line.startswith("fitting the final model and 5 folds: ")]
    assert fits == [f"fitting the final model and 5 folds: {done}/6" for done in range(7)]
    assert (out / "model.joblib").is_file() and (out / "metadata.json").is_file()

    report = tmp_path / "report"
    result = runner.invoke(cli, ["evaluate", "--model", str(out), "--data", str(tiny_jsonl),
                                 "--report", str(report)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["rows"] == 12
    scoring = [line for line in result.stderr.splitlines() if line.startswith("scoring with model ")]
    assert scoring[0] == f"scoring with model {summary['version']}: 0/12"
    assert scoring[-1] == f"scoring with model {summary['version']}: 12/12" and len(scoring) <= 11
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
    (["models", "calibrate"], ["--model"]),
    (["models", "prune"], ["--store"]),
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


class Stream(io.StringIO):
    """A text stream that is a terminal or not."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


REPORTS = [("3 Dateien gelesen",), *[("fitting", done, 3) for done in range(4)],
           *[("scoring", done, 40) for done in range(41)], ("fertig",)]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_progress_in_a_log_is_plain_lines_at_most_every_tenth():
    stream = Stream(tty=False)
    with ProgressOutput(stream) as progress:
        for report in REPORTS:
            progress(*report)
    assert stream.getvalue().splitlines() == [
        "3 Dateien gelesen", "fitting: 0/3", "fitting: 1/3", "fitting: 2/3", "fitting: 3/3",
        *[f"scoring: {done}/40" for done in range(0, 41, 4)], "fertig"]


def test_progress_lines_can_carry_the_time():
    stream = Stream(tty=False)
    with ProgressOutput(stream, timestamps=True) as progress:
        progress("los")
        progress("fitting", 0, 1)
    assert [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "[t] ", line) for line in stream.getvalue().splitlines()] == [
        "[t] los", "[t] fitting: 0/1"]


def test_progress_on_a_terminal_draws_a_bar_per_phase_between_the_messages():
    stream = Stream(tty=True)
    with ProgressOutput(stream) as progress:
        for report in REPORTS:
            progress(*report)
    lines = ANSI.sub("", stream.getvalue()).split("\n")
    assert lines[0] == "3 Dateien gelesen" and lines[3:] == ["fertig", ""]
    for line, phase, total in ((lines[1], "fitting", 3), (lines[2], "scoring", 40)):
        drawn = [part.rstrip() for part in line.split("\r") if part]  # each redraw starts at the line's start
        assert len(drawn) > 3 and all(part.startswith(f"{phase}  [") for part in drawn)
        assert re.fullmatch(rf"{phase}  \[#+\]  {total}/{total}", drawn[-1])
        assert f"  1/{total}" in drawn[1]
    assert "fitting: " not in stream.getvalue()


def test_a_bar_is_finished_when_the_command_fails_in_its_phase():
    stream = Stream(tty=True)
    with pytest.raises(click.ClickException), ProgressOutput(stream) as progress:
        progress("fitting", 1, 3)
        raise click.ClickException("kaputt")
    assert stream.getvalue().endswith("\x1b[?25h\n")  # the cursor is back, on a new line


def test_evaluate_draws_a_bar_on_a_terminal(tiny_model_dir, tiny_jsonl):
    """Run as an operator would, stderr on a (pseudo) terminal and stdout into a pipe."""
    terminal, stderr = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "moderation", "evaluate", "--model", str(tiny_model_dir),
                                "--data", str(tiny_jsonl)], cwd=ROOT, env=service_env(),
                               stdout=subprocess.PIPE, stderr=stderr)
    os.close(stderr)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the other end closed: the command is done
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 0, shown.decode()
    version = load_model(tiny_model_dir).version
    assert json.loads(stdout)["model_version"] == version
    drawn = ANSI.sub("", shown.decode()).split("\r")
    assert any(re.fullmatch(rf"scoring with model {re.escape(version)}  \[#+\]  12/12", part.strip()) for part in drawn)
    assert f"scoring with model {version}: " not in shown.decode()  # a bar, not log lines
