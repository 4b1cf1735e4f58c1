"""`retrain` and `models`: the learning loop of the data team."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click

from moderation.cli.common import OldSpellings, ProgressOutput, cli_config, cli_session, model_store, store_option
from moderation.ml import ModelError
from moderation.ml.data import DataError, Dataset, read_dataset, read_datasets
from moderation.ml.registry import Measurement, VersionInfo


@click.command()
@click.option("--base", "base_paths", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Train the prior anew on this public file (GermEval 2018 TSV, GermEval 2021 CSV, CSV/JSONL with "
                   "text,label; repeat). Without it the serving model's prior is corrected.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Only decisions taken on or after this date (UTC).")
@click.option("--report", "--out", "report_dir", cls=OldSpellings, type=click.Path(file_okay=False),
              help="Report folder; default $MODERATION_REPORT_DIR/retrain-<time> (instance/reports/retrain-<time>).")
@store_option
@click.option("--min-new-decisions", default=0, show_default=True, type=click.IntRange(0),
              help="Exit 0 without training when fewer decisions arrived since the newest version in the store "
                   "(serving or not) or the serving model was trained.")
@click.option("--tolerance", default=0.01, show_default=True, type=click.FloatRange(0, 1),
              help="How much lower the candidate's weighted ROC-AUC on new site decisions may be and still pass.")
@click.option("--force", is_flag=True, help="Promote even if the gate refuses or cannot run (needs --reason).")
@click.option("--reason", help="Why --force was needed; recorded in the metadata and the history.")
@click.option("--seed", default=0, show_default=True)
@click.option("--correction-c", default=None, type=click.FloatRange(min=0, min_open=True), hidden=True,
              help="Fix the inverse strength of the correction's penalty instead of choosing it by "
                   "cross-validation on the decisions (benchmarks/replay_site.py compares values).")
@click.option("--max-leak", "--min-reject-precision", "ignored", hidden=True, type=float,
              help="No longer used: the routing policy (MODERATION_MAX_LEAK, the dashboard) sets them.")
def retrain(base_paths: tuple[str, ...], since: datetime | None, report_dir: str | None, store: str | None,
            min_new_decisions: int, tolerance: float, force: bool, reason: str | None, seed: int,
            correction_c: float | None, ignored: float | None) -> None:
    """Learn the site's moderation from its decisions; promote the candidate only if it is not worse on new ones."""
    from moderation.services.policy import current_policy
    from moderation.services.retraining import RetrainRefused
    from moderation.services.retraining import retrain as run

    if force and not reason:
        raise click.UsageError("--force needs --reason")
    if ignored is not None:
        click.echo("--max-leak and --min-reject-precision are ignored: the site's routing policy sets them "
                   "(MODERATION_MAX_LEAK, MODERATION_MIN_REJECT_PRECISION, or the dashboard)", err=True)
    try:
        base = read_datasets(list(base_paths)) if base_paths else Dataset()
    except DataError as exc:
        raise click.ClickException(str(exc)) from None
    config = cli_config()
    models = model_store(store)
    report_dir = report_dir or str(Path(config["REPORT_DIR"]) / f"retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    since = since.replace(tzinfo=UTC) if since else None
    try:
        with cli_session() as session, ProgressOutput(timestamps=True) as progress:
            policy = current_policy(session, config).policy
            result = run(session, models, base=base, since=since, report_dir=report_dir, policy=policy,
                         tolerance=tolerance, force=force, force_reason=reason, min_new_decisions=min_new_decisions,
                         seed=seed, progress=progress,
                         **({"correction_c": correction_c} if correction_c is not None else {}))
    except (RetrainRefused, ValueError, ModelError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if "skipped" in result:
        click.echo(json.dumps({"skipped": result["skipped"]}, indent=2))
        return
    expected = result["expected"]
    click.echo(json.dumps({
        "candidate": result["candidate"], "current": result["current"], "promoted": result["promoted"],
        "gate": result["gate"], "report": result["report"],
        "routing": {k: expected.get(k) for k in ("approve_threshold", "reject_threshold")},
        "removal_rate": expected.get("removal_rate"), "automated_share": expected.get("automated_share"),
        "expected_leak": expected.get("leak"), "reject_precision": expected.get("reject_precision"),
        "site": result["site"],
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
             + (f" since {source['since'][:10]}" if source.get("since") else "")
             + (f" until {source['until'][:10]}" if source.get("until") else "") for source in measurement.data]
    text = measurement.rows_from + (" of " + ", ".join(names) if names else "")
    if measurement.compared_with:
        other = measurement.compared_with
        text += f"; {other['version']} scored {other['value']:.4f} on the same rows"
    return text


def _table(versions: list[VersionInfo]) -> str:
    """One line per figure; a retrained version has two (its gate's, its own validation), which do not compare."""
    rows = [["", "VERSION", "CREATED", "METRIC", "VALUE", "PROTOCOL", "ROWS", "MEASURED ON"]]
    for info in versions:
        for n, figure in enumerate(info.measurements or [None]):
            rows.append([
                "*" if info.serving and n == 0 else "",
                info.version + (" shipped" if info.shipped else "") if n == 0 else "",
                info.created_at if n == 0 else "",
                figure.metric if figure else "-",
                f"{figure.value:.4f}" if figure else "-",
                figure.protocol if figure else "not measured",
                str(figure.rows) if figure and figure.rows is not None else "",
                _measured_on(figure) if figure else ""])
    widths = [max(len(row[col]) for row in rows) for col in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.rjust(width) if col == 6 else cell.ljust(width)  # ROWS is a number
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


@models.command("prune")
@click.option("--keep", default=3, show_default=True, type=click.IntRange(0),
              help="How many of the newest stored versions to keep, besides those always kept.")
@click.option("--dry-run", is_flag=True, help="Only print what would be removed.")
@store_option
def prune(keep: int, dry_run: bool, store: str | None) -> None:
    """Delete old versions from the store; never the serving one, its rollback target or the shipped one."""
    models = model_store(store)
    try:
        removed, kept = models.prune_plan(keep)
        for info in removed:
            if not dry_run:
                models.remove(info.version)
            click.echo(f"{'would remove' if dry_run else 'removed'} {info.version} ({info.path})")
    except (ModelError, OSError, ValueError) as exc:  # OSError: the store cannot be read or written
        raise click.ClickException(str(exc)) from None
    for version, why in kept.items():
        click.echo(f"kept {version} ({why})", err=True)
    if not removed:
        click.echo("nothing to remove", err=True)


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
