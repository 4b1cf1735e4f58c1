"""`retrain` and `models`: the learning loop of the data team."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from moderation.cli.common import cli_config, cli_session
from moderation.ml import ModelError
from moderation.ml.data import DataError, Dataset, read_dataset, read_datasets
from moderation.ml.registry import (
    adopt_plain_folder,
    history,
    is_registry,
    list_versions,
    promote,
    rollback,
    serving_dir,
)


def _progress(message: str) -> None:
    click.echo(f"[{datetime.now():%H:%M:%S}] {message}", err=True)


def _model_root(model_dir: str | None) -> str:
    return model_dir or cli_config()["MODEL_DIR"]


@click.command()
@click.option("--base", "base_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Base training file (GermEval 2018 TSV, GermEval 2021 CSV, CSV/JSONL with text,label). Repeat.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only decisions taken on or after this date (UTC).")
@click.option("--out", "report_dir", type=click.Path(file_okay=False),
              help="Report folder; default reports/retrain-<time>.")
@click.option("--model-dir", help="Model root with versions; default MODERATION_MODEL_DIR or model/.")
@click.option("--max-leak", default=0.02, show_default=True, type=click.FloatRange(0, 1),
              help="At most this share of auto-approved comments may be offensive.")
@click.option("--min-reject-precision", default=0.95, show_default=True, type=click.FloatRange(0, 1),
              help="At least this share of auto-rejected comments must be offensive.")
@click.option("--tolerance", default=0.01, show_default=True, type=click.FloatRange(0, 1),
              help="How much lower the candidate's macro-F1 may be and still be promoted.")
@click.option("--force", is_flag=True, help="Promote even if the gate refuses (needs --reason).")
@click.option("--reason", help="Why --force was needed; recorded in the metadata and the history.")
@click.option("--seed", default=0, show_default=True)
def retrain(base_paths: tuple[str, ...], since: datetime | None, report_dir: str | None, model_dir: str | None,
            max_leak: float, min_reject_precision: float, tolerance: float, force: bool, reason: str | None,
            seed: int) -> None:
    """Fold moderator decisions into the model; promote the candidate only if it is not worse."""
    from moderation.services.retraining import retrain as run

    if force and not reason:
        raise click.UsageError("--force needs --reason")
    try:
        base = read_datasets(list(base_paths)) if base_paths else Dataset()
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    root = _model_root(model_dir)
    report_dir = report_dir or f"reports/retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    since = since.replace(tzinfo=UTC) if since else None
    try:
        with cli_session() as session:
            result = run(session, root, base=base, since=since, report_dir=report_dir, max_leak=max_leak,
                         min_reject_precision=min_reject_precision, tolerance=tolerance, force=force,
                         force_reason=reason, seed=seed, progress=_progress)
    except (ValueError, ModelError) as exc:
        raise click.ClickException(str(exc)) from None
    held = result["routing"]["held_out"]
    click.echo(json.dumps({
        "candidate": result["candidate"], "current": result["current"], "promoted": result["promoted"],
        "gate": result["gate"], "report": result["report"],
        "routing": {k: result["routing"][k] for k in ("approve_threshold", "reject_threshold")},
        "automation_rate": held["automation_rate"], "expected_leak": held["approved_offensive_rate"],
        "rejected_precision": held["rejected_precision"],
    }, indent=2, default=float))


@click.group()
def models() -> None:
    """List, promote and roll back model versions; running servers switch within seconds."""


@models.command("list")
@click.option("--model-dir", help="Model root; default MODERATION_MODEL_DIR or model/.")
def list_(model_dir: str | None) -> None:
    """List stored versions; * marks the serving one."""
    root = _model_root(model_dir)
    for info in list_versions(root):
        f1 = f"{info.macro_f1:.4f}" if info.macro_f1 is not None else "   -  "
        click.echo(f"{'*' if info.serving else ' '} {info.version:<24} {info.created_at:<26} macro-F1 {f1}")
    for entry in history(root)[-5:]:
        forced = ", forced" if entry["forced"] else ""
        click.echo(f"  {entry['at']}  -> {entry['version']}  ({entry['reason']}{forced})", err=True)


@models.command("promote")
@click.argument("version")
@click.option("--model-dir")
@click.option("--reason", default="promoted by hand", show_default=True)
def promote_(version: str, model_dir: str | None, reason: str) -> None:
    """Serve VERSION (checked to load first)."""
    root = _model_root(model_dir)
    try:
        if not is_registry(Path(root)):
            adopt_plain_folder(root)
        entry = promote(root, version, reason=reason)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving {entry['version']} (was {entry['previous']})")


@models.command("rollback")
@click.option("--model-dir")
def rollback_(model_dir: str | None) -> None:
    """Serve the version that served before the current one."""
    try:
        entry = rollback(_model_root(model_dir))
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving {entry['version']} (was {entry['previous']})")


@models.command("calibrate")
@click.argument("model", type=click.Path(exists=True, file_okay=False))
@click.option("--data", "data_paths", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="A training file of the model (repeat for each; checked against the recorded SHA-256).")
@click.option("--jobs", default=2, show_default=True, type=click.IntRange(1), help="Parallel fold fits.")
def calibrate_(model: str, data_paths: tuple[str, ...], jobs: int) -> None:
    """Write MODEL's out-of-fold calibration scores into its metadata.json (the artifact stays as it is).

    MODEL is a version folder, or a model root (its serving version). Give the files it was trained on.
    """
    from moderation.ml.recalibrate import recalibrate

    try:
        datasets = [read_dataset(path) for path in data_paths]
        metadata = recalibrate(serving_dir(model), datasets, n_jobs=jobs, progress=_progress)
    except (DataError, ModelError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"version": metadata["version"], "routing": metadata["routing"],
                           "calibration_rows": metadata["calibration"]["rows"]}, indent=2))
