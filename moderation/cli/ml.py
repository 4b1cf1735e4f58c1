"""CLI commands for the toxicity model: train, evaluate, score."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from moderation.cli.common import ProgressOutput, model_option, model_store
from moderation.ml import LoadedModel, ModelError, extras, load_model, train_and_save
from moderation.ml.data import DataError, read_dataset, read_datasets
from moderation.ml.metrics import classification_metrics
from moderation.ml.progress import counted


def _load(model_dir: str | None) -> LoadedModel:
    try:
        return load_model(model_dir) if model_dir else model_store().load_serving()
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.option("--data", "data_paths", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False), help="Labelled file (repeatable).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Model folder to write (add it to the store with `models import`).")
@click.option("--seed", default=0, show_default=True, help="Random seed for CV and fitting.")
def train(data_paths: tuple[str, ...], out_dir: str, seed: int) -> None:
    """Train the toxicity model on labelled files and write a model folder."""
    try:
        data = read_datasets(list(data_paths))
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    with ProgressOutput() as progress:
        progress(f"read {len(data.texts)} rows ({sum(data.labels)} offensive) from {len(data_paths)} file(s)")
        try:
            metadata = train_and_save(data.texts, data.labels, out_dir, categories=data.categories,
                                      groups=data.groups, domains=data.domains, files=data.files, seed=seed,
                                      sources=data.sources, progress=progress)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    summary = {key: metadata[key] for key in ("version", "rows", "decision_threshold", "routing")}
    validation = metadata["validation"].get("at_decision_threshold")
    summary["cv_macro_f1"] = validation["macro_f1"] if validation else None
    click.echo(json.dumps(summary, indent=2))


@click.command()
@model_option
@click.option("--data", "data_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Labelled file to evaluate on.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="Also write plots and index.html into this folder.")
def evaluate(model_dir: str | None, data_path: str, report_dir: str | None) -> None:
    """Print the model's metrics on a labelled file as JSON, optionally with a report folder."""
    if report_dir:
        extras.check(("matplotlib",), "evaluate --report")  # before scoring every row, not after
    model = _load(model_dir)
    try:
        data = read_dataset(data_path)
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    with ProgressOutput() as progress:
        scores = [model.score(text, explain=False).toxicity
                  for text in counted(data.texts, progress, f"scoring with model {model.version}")]
    metrics = classification_metrics(data.labels, scores, model.decision_threshold)
    approved = [y for y, s in zip(data.labels, scores, strict=True) if s < model.approve_threshold]
    rejected = [y for y, s in zip(data.labels, scores, strict=True) if s >= model.reject_threshold]
    metrics["model_version"] = model.version
    metrics["data"] = data.sources[0]
    metrics["routing"] = {
        "approve_threshold": model.approve_threshold,
        "reject_threshold": model.reject_threshold,
        "approved_share": len(approved) / len(scores),
        "approved_offensive_rate": sum(approved) / len(approved) if approved else None,
        "rejected_share": len(rejected) / len(scores),
        "rejected_precision": sum(rejected) / len(rejected) if rejected else None,
    }
    if report_dir:
        from moderation.ml.report import write_report  # matplotlib only when asked

        thresholds = {"approve": model.approve_threshold, "decision": model.decision_threshold,
                      "reject": model.reject_threshold}
        index = write_report(report_dir, data.labels, scores, metrics, thresholds,
                             f"Model {model.version} on {Path(data_path).name}")
        click.echo(f"wrote report {index}", err=True)
    click.echo(json.dumps(metrics, indent=2))


@click.command()
@model_option
@click.option("--input", "input_file", type=click.File("r", encoding="utf-8"), default="-",
              help="JSON lines with a `text` field (default stdin).")
def score(model_dir: str | None, input_file) -> None:
    """Score JSON lines with `text` and print one JSON line of scores (and the model version) per input line."""
    model = _load(model_dir)
    for line_no, line in enumerate(input_file, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{input_file.name}:{line_no}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise click.ClickException(f"{input_file.name}:{line_no}: needs a string field 'text'")
        result = model.score(row["text"])
        out = {
            "toxicity": result.toxicity,
            "offensive": result.offensive,
            "category": result.category,
            "highlights": [asdict(h) for h in result.highlights],
            "model_version": model.version,
        }
        click.echo(json.dumps(out, ensure_ascii=False))
