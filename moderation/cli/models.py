"""`retrain` and `models`: the learning loop of the data team."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from moderation.cli.common import OldSpellings, ProgressOutput, cli_session, model_store, store_option
from moderation.ml import ModelError
from moderation.ml.data import DataError, Dataset, read_dataset, read_datasets
from moderation.ml.registry import Measurement, VersionInfo


@click.command()
@click.option("--base", "base_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Base training file (GermEval 2018 TSV, GermEval 2021 CSV, CSV/JSONL with text,label). Repeat.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only decisions taken on or after this date (UTC).")
@click.option("--report", "--out", "report_dir", cls=OldSpellings, type=click.Path(file_okay=False),
              help="Report folder; default reports/retrain-<time>.")
@store_option
@click.option("--max-leak", default=0.02, show_default=True, type=click.FloatRange(0, 1),
              help="At most this share of auto-approved comments may be offensive.")
@click.option("--min-reject-precision", default=0.95, show_default=True, type=click.FloatRange(0, 1),
              help="At least this share of auto-rejected comments must be offensive.")
@click.option("--tolerance", default=0.01, show_default=True, type=click.FloatRange(0, 1),
              help="How much lower the candidate's macro-F1 may be and still be promoted.")
@click.option("--force", is_flag=True, help="Promote even if the gate refuses (needs --reason).")
@click.option("--reason", help="Why --force was needed; recorded in the metadata and the history.")
@click.option("--seed", default=0, show_default=True)
def retrain(base_paths: tuple[str, ...], since: datetime | None, report_dir: str | None, store: str | None,
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
    models = model_store(store)
    report_dir = report_dir or f"reports/retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    since = since.replace(tzinfo=UTC) if since else None
    try:
        with cli_session() as session, ProgressOutput(timestamps=True) as progress:
            result = run(session, models, base=base, since=since, report_dir=report_dir, max_leak=max_leak,
                         min_reject_precision=min_reject_precision, tolerance=tolerance, force=force,
                         force_reason=reason, seed=seed, progress=progress)
    except (ValueError, ModelError, OSError) as exc:
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
    """List, promote, roll back, import and export model versions; running servers switch within seconds."""


@models.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the versions and their figures as JSON.")
def list_(store: str | None, as_json: bool) -> None:
    """List the versions (* serving) with each macro-F1, the protocol and the data it was measured on."""
    models = model_store(store)
    try:
        versions = models.versions()
    except (ModelError, OSError) as exc:  # OSError: the store cannot be read or written
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"serving": next((i.version for i in versions if i.serving), None), "versions": [
            {"version": i.version, "created_at": i.created_at, "serving": i.serving, "shipped": i.shipped,
             "path": str(i.path), "measurements": [asdict(m) for m in i.measurements]} for i in versions]},
            indent=2, ensure_ascii=False))
        return
    click.echo(_table(versions))
    for entry in models.history()[-5:]:
        forced = ", forced" if entry["forced"] else ""
        click.echo(f"  {entry['at']}  -> {entry['version']}  ({entry['reason']}{forced})", err=True)


def _measured_on(measurement: Measurement) -> str:
    names = [source["name"] + (f" ({source['sha256'][:8]})" if source.get("sha256") else "")
             + (f" since {source['since'][:10]}" if source.get("since") else "") for source in measurement.data]
    text = measurement.rows_from + (" of " + ", ".join(names) if names else "")
    if measurement.compared_with:
        other = measurement.compared_with
        text += f"; {other['version']} scored {other['macro_f1']:.4f} on the same rows"
    return text


def _table(versions: list[VersionInfo]) -> str:
    """One line per figure; a retrained version has two (held-out slice, cross-validation), which do not compare."""
    rows = [["", "VERSION", "CREATED", "MACRO-F1", "PROTOCOL", "ROWS", "MEASURED ON"]]
    for info in versions:
        for n, figure in enumerate(info.measurements or [None]):
            rows.append([
                "*" if info.serving and n == 0 else "",
                info.version + (" shipped" if info.shipped else "") if n == 0 else "",
                info.created_at if n == 0 else "",
                f"{figure.macro_f1:.4f}" if figure else "-",
                figure.protocol if figure else "not measured",
                str(figure.rows) if figure and figure.rows is not None else "",
                _measured_on(figure) if figure else ""])
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(width) if col == 5 else cell.ljust(width)  # ROWS is a number
                 for col, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append(f"{cells[0]} {'  '.join(cells[1:])}".rstrip())
    return "\n".join(lines)


@models.command("promote")
@click.argument("version")
@store_option
@click.option("--reason", default="promoted by hand", show_default=True)
def promote_(version: str, store: str | None, reason: str) -> None:
    """Serve VERSION from the store, or the shipped model by its version (checked to load first)."""
    try:
        entry = model_store(store).promote(version, reason=reason)
    except (ModelError, OSError) as exc:  # OSError: the store cannot be read or written
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving {entry['version']} (was {entry['previous']})")


@models.command("rollback")
@store_option
def rollback_(store: str | None) -> None:
    """Serve the version that served before the current one."""
    try:
        entry = model_store(store).rollback()
    except (ModelError, OSError) as exc:  # OSError: the store cannot be read or written
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving {entry['version']} (was {entry['previous']})")


@models.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@store_option
def import_(folder: str, store: str | None) -> None:
    """Add the model folder FOLDER (from `train --out` or `models export`) to the store, without serving it."""
    models = model_store(store)
    try:
        version = models.add(folder)
    except (ModelError, OSError) as exc:  # OSError: the store cannot be read or written
        raise click.ClickException(str(exc)) from None
    click.echo(f"stored {version} in {models.root}; serve it with `python -m moderation models promote {version}`")


@models.command("export")
@click.argument("version", required=False)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Model folder to write (must not exist).")
@store_option
def export(version: str | None, out_dir: str, store: str | None) -> None:
    """Write VERSION (default: the serving one) as a plain model folder, e.g. to ship it in model/."""
    models = model_store(store)
    try:
        written = models.export(version or models.serving_version(), out_dir)
    except (ModelError, OSError) as exc:  # OSError: the store cannot be read or written
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {written}")


@models.command("calibrate")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder to calibrate (the shipped `model/`, or a version folder in the store).")
@click.option("--data", "data_paths", multiple=True, required=True, type=click.Path(exists=True, dir_okay=False),
              help="A training file of the model (repeat for each; checked against the recorded SHA-256).")
@click.option("--jobs", default=2, show_default=True, type=click.IntRange(1), help="Parallel fold fits.")
def calibrate_(model_dir: str, data_paths: tuple[str, ...], jobs: int) -> None:
    """Write a model's out-of-fold calibration scores into its metadata.json (the artifact stays as it is).

    Give the files it was trained on, each with --data.
    """
    from moderation.ml.recalibrate import recalibrate

    try:
        datasets = [read_dataset(path) for path in data_paths]
        with ProgressOutput(timestamps=True) as progress:
            metadata = recalibrate(Path(model_dir), datasets, n_jobs=jobs, progress=progress)
    except (DataError, ModelError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"version": metadata["version"], "routing": metadata["routing"],
                           "calibration_rows": metadata["calibration"]["rows"]}, indent=2))
