"""The model store: promoted versions in a writable folder, over the read-only shipped model.

The repository ships one model as a plain folder (`model/`: model.joblib + metadata.json), read-only
at run time. Everything the learning loop writes goes to the store (`instance/models/` by default)::

    <store>/CURRENT                the serving version, one line; replaced atomically (os.replace)
    <store>/HISTORY.jsonl          every promotion: version, previous, time, reason, forced
    <store>/versions/<version>/    model.joblib + metadata.json, as `train_and_save` writes them

A store without CURRENT (empty, or not created yet) serves the shipped model: that is its implicit
first version. Promoting the shipped model (a rollback to it, say) first copies it into the store, so
a store that names a version always holds it, whatever model a later release ships.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from moderation.ml.model import LoadedModel, ModelError, file_sha256, load_model, read_metadata

POINTER, HISTORY, VERSIONS = "CURRENT", "HISTORY.jsonl", "versions"
CANDIDATE = ".candidate"


@dataclass(frozen=True)
class Measurement:
    """One figure a version's metadata records, with what it measures, on which rows and how.

    Figures with different metrics, protocols or data do not compare; a retrain's gate figure comes with the
    figure of the model it replaced on the same rows, which does.
    """

    metric: str                         # "macro-F1" or "weighted ROC-AUC"
    value: float
    protocol: str                       # "cross-validation", "cross-fitting", "new site decisions", "held-out slice"
    method: str                         # the protocol in the metadata's own words
    rows: int | None                    # how many rows were scored
    rows_from: str                      # which of the data's rows those were
    data: tuple[dict[str, str], ...]    # the data they came from: name, and sha256 (files) or since/until (decisions)
    compared_with: dict | None = None   # the model a retrain's gate scored on the same rows: version, value


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created_at: str
    measurements: tuple[Measurement, ...]
    serving: bool
    shipped: bool
    path: Path


def read_pointer(root: str | Path) -> str | None:
    """Return the serving version named by `root`/CURRENT, or None when there is none."""
    try:
        return (Path(root) / POINTER).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def version_dir(root: str | Path, version: str) -> Path:
    """Return the folder of `version` (refusing names that would leave the versions folder)."""
    if not version or "/" in version or "\\" in version or version.startswith("."):
        raise ModelError(f"invalid model version name {version!r}", reason="the version name is invalid")
    return Path(root) / VERSIONS / version


def history(root: str | Path) -> list[dict]:
    """Return the promotions recorded under `root`, oldest first."""
    path = Path(root) / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


DECISIONS_SOURCE = "database decisions"  # the name a retrain gives the moderators' decisions in training_data


def _source(source: dict) -> dict[str, str]:
    return {"name": source.get("path", "?"),
            **{key: source[key] for key in ("sha256", "since", "until") if source.get(key)}}


def measurements(metadata: dict) -> list[Measurement]:
    """Return the figures a model's metadata records, each with its metric, protocol and data.

    A retrained version has two: its gate's (first, since the promotion went by it, beside the figure of the
    model it was compared with on the same rows), and its own validation on its training rows.
    """
    sources = [_source(s) for s in metadata.get("training_data") or []]
    decisions = tuple(s for s in sources if s["name"] == DECISIONS_SOURCE)
    found = []
    gate = metadata.get("gate") or {}
    if gate.get("metric") == "weighted_roc_auc" and gate.get("candidate") is not None:
        found.append(Measurement(
            "weighted ROC-AUC", gate["candidate"], "new site decisions", gate.get("compared_on", ""),
            gate.get("compared_rows"), "site decisions neither model trained on", decisions,
            {"version": gate["compared_with"], "value": gate["current"]}))
    held_out = metadata.get("held_out_metrics") or {}
    if held_out.get("macro_f1") is not None:  # versions retrained before the gate compared on site decisions
        compared_on = gate.get("compared_on", "whole held-out slice")
        decisions_only = compared_on.startswith("held-out decisions")
        share = (metadata.get("holdout") or {}).get("share")
        held = f"held out by key hash ({share:.0%} of labelled items)" if share is not None else "held out"
        found.append(Measurement(
            "macro-F1", held_out["macro_f1"], "held-out decisions" if decisions_only else "held-out slice",
            f"{held}, trained on by neither model; {compared_on}", gate.get("compared_rows", held_out.get("rows")),
            "held-out decisions" if decisions_only else compared_on, decisions if decisions_only else tuple(sources),
            {"version": gate["compared_with"], "value": gate.get("current")} if "compared_with" in gate else None))
    validation = metadata.get("validation") or {}
    figures = validation.get("at_decision_threshold") or {}
    if figures.get("macro_f1") is not None:
        site = (metadata.get("site") or {}).get("corrected", False)
        found.append(Measurement(
            "macro-F1", figures["macro_f1"], "cross-fitting" if site else "cross-validation",
            validation.get("method", "cross-validation"), validation.get("rows", figures.get("rows")),
            "usable site decisions" if site else validation.get("rows_from", "all rows"),
            decisions if site else tuple(sources)))
    return found


class ModelStore:
    """A writable store of model versions (`root`) over the read-only shipped model folder (`shipped`)."""

    def __init__(self, root: str | Path, shipped: str | Path) -> None:
        self.root, self.shipped = Path(root), Path(shipped)

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r}, shipped={str(self.shipped)!r})"

    def pointer(self) -> str | None:
        """Return the version the store's CURRENT names, or None when the shipped model serves."""
        return read_pointer(self.root)

    def shipped_version(self) -> str:
        """Return the version of the shipped model."""
        return read_metadata(self.shipped)["version"]

    def serving_version(self) -> str:
        """Return the version that serves: the store's CURRENT, else the shipped model's."""
        return self.pointer() or self.shipped_version()

    def version_dir(self, version: str) -> Path:
        """Return the store's folder for `version` (which need not exist yet)."""
        return version_dir(self.root, version)

    def candidate_dir(self) -> Path:
        """Return the staging folder a retrain writes its candidate into (same file system as the versions)."""
        return self.root / VERSIONS / CANDIDATE

    def load_version(self, version: str) -> LoadedModel:
        """Load (hash-checked) `version` from the store, or the shipped model if it has that version."""
        folder = self.version_dir(version)
        if not folder.exists() and self._is_shipped(version):
            folder = self.shipped
        return load_model(folder, expect_version=version)

    def load_serving(self) -> LoadedModel:
        """Load (hash-checked) the serving model: the store's CURRENT, else the shipped model."""
        version = self.pointer()
        return self.load_version(version) if version else load_model(self.shipped)

    def serving_dir(self) -> Path:
        """Return the folder of the serving model."""
        version = self.pointer()
        if version is None:
            return self.shipped
        folder = self.version_dir(version)
        return folder if folder.exists() or not self._is_shipped(version) else self.shipped

    def versions(self) -> list[VersionInfo]:
        """Return the stored versions and the shipped model, oldest first."""
        serving = self.serving_version()
        infos = {}
        folders = sorted((self.root / VERSIONS).glob("*/")) if (self.root / VERSIONS).is_dir() else []
        try:
            shipped = read_metadata(self.shipped)
        except ModelError:
            shipped = None
        for folder in folders:
            if folder.name.startswith("."):
                continue
            try:
                meta = read_metadata(folder)
            except ModelError:
                continue
            infos[meta["version"]] = VersionInfo(meta["version"], meta.get("created_at", ""),
                                                 tuple(measurements(meta)),
                                                 meta["version"] == serving,
                                                 shipped is not None and meta["version"] == shipped["version"], folder)
        if shipped is not None and shipped["version"] not in infos:
            infos[shipped["version"]] = VersionInfo(shipped["version"], shipped.get("created_at", ""),
                                                    tuple(measurements(shipped)), shipped["version"] == serving, True,
                                                    self.shipped)
        return sorted(infos.values(), key=lambda i: (i.created_at, i.version))

    def history(self) -> list[dict]:
        """Return the store's promotions, oldest first."""
        return history(self.root)

    def add(self, folder: str | Path) -> str:
        """Copy a model folder into the store as a version (checked to load first); return its version.

        Adding a version the store already holds with the same artifact does nothing; with another
        artifact it is refused.
        """
        model = load_model(folder)
        target = self.version_dir(model.version)
        if target.exists():
            if read_metadata(target)["artifact"].get("sha256") != model.metadata["artifact"]["sha256"]:
                raise ModelError(f"the store already holds a different {model.version} in {target}")
            return model.version
        staging = self.root / VERSIONS / f".add-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            _copy_model(model, staging)
            staging.rename(target)  # whole or not at all
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return model.version

    def promote(self, version: str, *, reason: str, forced: bool = False) -> dict:
        """Make `version` the serving one, after checking that it loads; record why."""
        if not self.version_dir(version).exists() and self._is_shipped(version):
            self.add(self.shipped)
        load_model(self.version_dir(version), expect_version=version)  # refuses missing, tampered, broken
        entry = {"version": version, "previous": self.serving_version(),
                 "at": datetime.now(UTC).isoformat(timespec="seconds"), "reason": reason, "forced": forced}
        with (self.root / HISTORY).open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        tmp = self.root / f".{POINTER}.{os.getpid()}.tmp"
        tmp.write_text(version + "\n", encoding="utf-8")
        os.replace(tmp, self.root / POINTER)  # atomic: readers see the old or the new version, never half
        return entry

    def rollback_target(self) -> str | None:
        """Return the version `rollback` would serve, or None when there is none."""
        current = self.pointer()
        if current is None:
            return None
        for entry in reversed(self.history()):
            if entry["version"] == current and entry.get("previous") not in (None, current):
                return entry["previous"]
        return None

    def rollback(self, *, reason: str = "rollback") -> dict:
        """Serve the version that served before the current one."""
        current = self.pointer()
        if current is None:
            raise ModelError(f"{self.root} serves the shipped model {self.shipped_version()}: nothing to roll back")
        target = self.rollback_target()
        if target is None:
            raise ModelError(f"no earlier version recorded for {current} in {self.root / HISTORY}")
        return self.promote(target, reason=reason)

    def prune_plan(self, keep: int) -> tuple[list[VersionInfo], dict[str, str]]:
        """Return (versions to remove, oldest first; {kept version: why}) for keeping the `keep` newest stored ones.

        The serving version, its rollback target and the shipped model are kept whatever `keep` says.
        """
        if keep < 0:
            raise ValueError("keep must be 0 or more")
        try:
            shipped = self.shipped_version()
        except ModelError:
            shipped = None
        kept = {}
        for version, why in ((shipped, "shipped"), (self.rollback_target(), "rollback target"),
                             (self.serving_version(), "serving")):
            if version is not None:
                kept[version] = why
        stored = [info for info in self.versions() if info.path.parent == self.root / VERSIONS]
        newest = [info.version for info in stored[::-1] if info.version not in kept][:keep]
        kept.update((version, f"one of the {keep} newest") for version in newest)
        return [info for info in stored if info.version not in kept], kept

    def remove(self, version: str) -> None:
        """Delete a stored version's folder (whole or not at all: it is renamed out of the versions first)."""
        folder = self.version_dir(version)
        if version in (self.serving_version(), self.rollback_target()):
            raise ModelError(f"{version} serves or is the rollback target: not removed")
        trash = self.root / VERSIONS / f".prune-{os.getpid()}-{version}"
        folder.rename(trash)
        shutil.rmtree(trash)

    def export(self, version: str, out: str | Path) -> Path:
        """Write `version` (checked to load) as a plain model folder at `out`, which must not exist yet."""
        out = Path(out)
        model = self.load_version(version)
        if out.exists():
            raise ModelError(f"{out} already exists; export writes a new folder")
        out.mkdir(parents=True)
        try:
            _copy_model(model, out)
        except ModelError:
            shutil.rmtree(out, ignore_errors=True)
            raise
        return out

    def _is_shipped(self, version: str) -> bool:
        try:
            return self.shipped_version() == version
        except ModelError:
            return False


def _copy_model(model: LoadedModel, out: Path) -> None:
    """Copy a loaded model's folder into `out`, refusing a copy whose artifact is not the one loaded."""
    artifact = model.metadata["artifact"]
    shutil.copyfile(model.path / artifact["file"], out / artifact["file"])
    shutil.copyfile(model.path / "metadata.json", out / "metadata.json")
    # The source may have changed since it was loaded: what lands in `out` must match what was checked.
    if read_metadata(out) != model.metadata or file_sha256(out / artifact["file"]) != artifact["sha256"]:
        raise ModelError(f"{model.path} changed while it was being copied; nothing was copied")
