"""Versioned model folders with one atomically switched pointer to the serving version.

Layout of a model root (`model/` by default)::

    model/CURRENT                  the serving version, one line; replaced atomically (os.replace)
    model/HISTORY.jsonl            every promotion: version, previous, time, reason, forced
    model/versions/<version>/      model.joblib + metadata.json, as `train_and_save` writes them

A plain model folder (model.joblib + metadata.json, no CURRENT) is still accepted everywhere: it is
the only version there is.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from moderation.ml.model import LoadedModel, ModelError, load_model, read_metadata

POINTER, HISTORY, VERSIONS = "CURRENT", "HISTORY.jsonl", "versions"


@dataclass(frozen=True)
class VersionInfo:
    version: str
    created_at: str
    macro_f1: float | None
    serving: bool
    path: Path


def is_registry(root: Path) -> bool:
    """Whether `root` holds versions behind a pointer (rather than one plain model folder)."""
    return (root / POINTER).is_file()


def read_pointer(root: str | Path) -> str | None:
    """Return the serving version named by CURRENT, or None for a plain folder."""
    try:
        return (Path(root) / POINTER).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def version_dir(root: str | Path, version: str) -> Path:
    """Return the folder of `version` (refusing names that would leave the versions folder)."""
    if not version or "/" in version or "\\" in version or version.startswith("."):
        raise ModelError(f"invalid model version name {version!r}", reason="the version name is invalid")
    return Path(root) / VERSIONS / version


def serving_dir(root: str | Path) -> Path:
    """Return the folder of the serving model under `root`."""
    root = Path(root)
    version = read_pointer(root)
    return version_dir(root, version) if version else root


def load_version(root: str | Path, version: str) -> LoadedModel:
    """Load (hash-checked) `version` under `root`, refusing a folder whose metadata names another version."""
    return load_model(version_dir(root, version), expect_version=version)


def load_serving(root: str | Path) -> LoadedModel:
    """Load (hash-checked) the serving model under `root`."""
    version = read_pointer(root)
    return load_version(root, version) if version else load_model(root)


def list_versions(root: str | Path) -> list[VersionInfo]:
    """Return every stored version, oldest first."""
    root = Path(root)
    serving = read_pointer(root)
    infos = []
    for folder in sorted((root / VERSIONS).glob("*/")) if (root / VERSIONS).is_dir() else []:
        try:
            meta = read_metadata(folder)
        except ModelError:
            continue
        f1 = (meta.get("validation", {}).get("at_decision_threshold") or {}).get("macro_f1")
        infos.append(VersionInfo(meta["version"], meta.get("created_at", ""), f1, meta["version"] == serving, folder))
    return sorted(infos, key=lambda i: (i.created_at, i.version))


def history(root: str | Path) -> list[dict]:
    """Return the promotions, oldest first."""
    path = Path(root) / HISTORY
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_pointer(root: Path, version: str) -> None:
    tmp = root / f".{POINTER}.{os.getpid()}.tmp"
    tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(tmp, root / POINTER)  # atomic: readers see the old or the new version, never half


def promote(root: str | Path, version: str, *, reason: str, forced: bool = False) -> dict:
    """Make `version` the serving one, after checking that it loads; record why."""
    root = Path(root)
    load_version(root, version)  # refuses a missing, tampered, broken or misnamed version
    previous = read_pointer(root)
    entry = {"version": version, "previous": previous, "at": datetime.now(UTC).isoformat(timespec="seconds"),
             "reason": reason, "forced": forced}
    with (root / HISTORY).open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry, ensure_ascii=False) + "\n")
    _write_pointer(root, version)
    return entry


def rollback(root: str | Path, *, reason: str = "rollback") -> dict:
    """Serve the version that served before the current one."""
    current = read_pointer(root)
    if current is None:
        raise ModelError(f"{root} has no serving version to roll back from")
    for entry in reversed(history(root)):
        if entry["version"] == current and entry.get("previous"):
            return promote(root, entry["previous"], reason=reason)
    raise ModelError(f"no earlier version recorded for {current} in {Path(root) / HISTORY}")


def adopt_plain_folder(root: str | Path) -> str:
    """Turn a plain model folder into a registry with that model as its first, serving version."""
    root = Path(root)
    if is_registry(root):
        return read_pointer(root) or ""
    meta = read_metadata(root)
    target = version_dir(root, meta["version"])
    target.mkdir(parents=True, exist_ok=True)
    for name in (meta["artifact"]["file"], "metadata.json"):
        shutil.move(str(root / name), target / name)
    promote(root, meta["version"], reason="initial version")
    return meta["version"]
