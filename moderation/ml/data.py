"""Read labelled comments: GermEval 2018 TSV, GermEval 2021 CSV, GAHD CSV, generic CSV or JSON lines.

Every row gets a group key for grouped cross-validation, so that near-duplicate rows never
sit on both sides of a split:
- GermEval 2018: the first @-mentioned account (tweets replying to the same account share
  words and topics); rows without a mention form their own group.
- GermEval 2021: blocks of 50 consecutive `comment_id`s. The file is ordered by discussion
  (comments under the same show post are adjacent) and user names are anonymised to @USER,
  so id blocks are the closest available stand-in for threads.
- GAHD: each connected set of rows linked by `contrastive_gahd_id` (a sentence and its harmless
  rewrite, followed along chains, also through a partner in another split that is not in the file)
  is one group, so no split separates a pair; a row without a partner is its own group.
- Generic files: a `group` column/key when present, else as for GermEval 2018.

Every row also gets a domain (its genre) for domain adaptation (`DomainAdaptedLogisticRegression`):
GermEval 2018 rows are tweets, GermEval 2021 rows comments, GAHD rows "gahd", generic rows their
`domain` column/key or else comments, the genre the service scores. GAHD's sentences were written by
annotators to fool hate-speech models (many with a harmless twin that differs by a word or two), not
posted under an article: its base rate, length and phrasing are its own, so its quirks belong in a
block of their own rather than in the comment weights the service keeps.

GermEval 2019 keeps the GermEval 2018 format and is read by the same reader; our copy states no
licence, so it is for validation only (benchmarks/shift_eval.py), never for a shipped model.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moderation.ml.model import file_sha256
from moderation.ml.pipeline import SERVED_DOMAIN

CATEGORIES = ("insult", "abuse", "profanity", "threat")
GERMEVAL2021_BLOCK = 50
TWEET = "tweet"
GAHD = "gahd"
_GAHD_COLUMNS = ("gahd_id", "text", "label", "contrastive_gahd_id")
_DOMAIN_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")

_MENTION_RE = re.compile(r"(?<![\w@])@(\w+)")
_TRUE = {"1", "true", "yes", "offensive", "offense", "toxic"}
_FALSE = {"0", "false", "no", "ok", "other", "not_offensive", "none"}


class DataError(ValueError):
    """A training or evaluation file is malformed; the message names the file and line."""


@dataclass
class Dataset:
    """Labelled comments from one or more files, with group keys and provenance."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    categories: list[str | None] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    # Each row's genre: "tweet" (GermEval 2018), "gahd" (GAHD) or SERVED_DOMAIN, "comment" (the rest).
    domains: list[str] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    # Each row's file name (the threat head weighs the other rows of the files that hold threats apart).
    files: list[str] = field(default_factory=list)

    def extend(self, other: Dataset) -> None:
        """Append another dataset's rows and sources."""
        self.texts += other.texts
        self.labels += other.labels
        self.categories += other.categories
        self.groups += other.groups
        self.domains += other.domains
        self.sources += other.sources
        self.files += other.files


def _mention_group(text: str, fallback: str) -> str:
    match = _MENTION_RE.search(text)
    return f"@{match.group(1).lower()}" if match else fallback


def parse_label(value: Any, where: str) -> int:
    """Turn 1/0, true/false or offensive/ok (any case) into 1 or 0."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise DataError(f"{where}: label {value!r} is not one of 1/0, true/false, offensive/ok")


def parse_category(value: Any, where: str) -> str | None:
    """Turn an optional category (insult/abuse/profanity/threat, empty or other) into a name or None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "other", "none", "null"):
        return None
    if text not in CATEGORIES:
        raise DataError(f"{where}: category {value!r} is not one of {', '.join(CATEGORIES)}")
    return text


def read_germeval2018(path: Path) -> Dataset:
    """Read the GermEval 2018 TSV: text, OFFENSE/OTHER, ABUSE/INSULT/PROFANITY/OTHER."""
    data = Dataset()
    with open(path, encoding="utf-8", newline="") as handle:
        for line_no, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            where = f"{path}:{line_no}"
            if len(fields) not in (2, 3):
                raise DataError(f"{where}: expected text<TAB>coarse<TAB>fine, got {len(fields)} fields")
            text, coarse = fields[0], fields[1].strip()
            if coarse not in ("OFFENSE", "OTHER"):
                raise DataError(f"{where}: coarse label {coarse!r} is not OFFENSE or OTHER")
            label = int(coarse == "OFFENSE")
            category = parse_category(fields[2], where) if len(fields) == 3 and label else None
            data.texts.append(text)
            data.labels.append(label)
            data.categories.append(category)
            data.groups.append(_mention_group(text, f"row{line_no}"))
    return data


def _read_csv_rows(path: Path):
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        try:
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise DataError(f"{path}:{reader.line_num}: expected {len(header)} columns")
                yield reader.line_num, header, row
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: {exc}") from exc


def read_germeval2021(path: Path) -> Dataset:
    """Read the GermEval 2021 CSV (comment_text, Sub1_Toxic)."""
    data = Dataset()
    for line_no, _, row in _read_csv_rows(path):
        where = f"{path}:{line_no}"
        try:
            comment_id = int(row["comment_id"])
        except ValueError as exc:
            raise DataError(f"{where}: comment_id {row['comment_id']!r} is not an integer") from exc
        toxic = row["Sub1_Toxic"].strip()
        if toxic not in ("0", "1"):
            raise DataError(f"{where}: Sub1_Toxic {toxic!r} is not 0 or 1")
        data.texts.append(row["comment_text"])
        data.labels.append(int(toxic))
        data.categories.append(None)
        data.groups.append(f"block{comment_id // GERMEVAL2021_BLOCK}")
    return data


def _connected_sets(links: dict[str, str]) -> dict[str, str]:
    """Map every id to the smallest id of its connected set, given each id's one link (or "")."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for node, other in links.items():
        a, b = root(node), root(other or node)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {node: root(node) for node in links}


def read_gahd(path: Path) -> Dataset:
    """Read GAHD's CSV (gahd_id, text, label, contrastive_gahd_id), grouping contrastive pairs."""
    data = Dataset()
    links: dict[str, str] = {}
    for line_no, header, row in _read_csv_rows(path):
        missing = [name for name in _GAHD_COLUMNS if name not in header]
        if missing:
            raise DataError(f"{path}:1: GAHD header lacks {', '.join(missing)}, has {header}")
        where = f"{path}:{line_no}"
        gahd_id = row["gahd_id"].strip()
        if not gahd_id:
            raise DataError(f"{where}: empty gahd_id")
        if gahd_id in links:
            raise DataError(f"{where}: gahd_id {gahd_id!r} occurs twice")
        label = row["label"].strip()
        if label not in ("0", "1"):
            raise DataError(f"{where}: label {label!r} is not 0 or 1")
        links[gahd_id] = row["contrastive_gahd_id"].strip()
        data.texts.append(row["text"])
        data.labels.append(int(label))
        data.categories.append(None)
    roots = _connected_sets(links)
    data.groups = [f"set:{roots[gahd_id]}" for gahd_id in links]
    data.domains = [GAHD] * len(data.texts)
    return data


def _generic_row(data: Dataset, row: dict, where: str, fallback_group: str) -> None:
    if not isinstance(row, dict) or "text" not in row or "label" not in row:
        raise DataError(f"{where}: needs 'text' and 'label'")
    if not isinstance(row["text"], str):
        raise DataError(f"{where}: 'text' must be a string")
    label = parse_label(row["label"], where)
    data.texts.append(row["text"])
    data.labels.append(label)
    data.categories.append(parse_category(row.get("category"), where) if label else None)
    group = row.get("group")
    data.groups.append(str(group) if group not in (None, "") else
                       _mention_group(row["text"], fallback_group))
    domain = row.get("domain")
    if domain not in (None, "") and (not isinstance(domain, str) or not _DOMAIN_RE.fullmatch(domain)):
        raise DataError(f"{where}: 'domain' must be a short lowercase name such as 'comment' or 'tweet', "
                        f"got {domain!r}")
    data.domains.append(domain or SERVED_DOMAIN)


def read_generic_csv(path: Path) -> Dataset:
    """Read a CSV with a header holding at least `text` and `label`."""
    data = Dataset()
    for line_no, header, row in _read_csv_rows(path):
        if "text" not in header or "label" not in header:
            raise DataError(f"{path}:1: CSV header needs 'text' and 'label', has {header}")
        _generic_row(data, row, f"{path}:{line_no}", f"row{line_no}")
    return data


def json_lines(path: str | Path) -> Iterator[tuple[Any, str, int]]:
    """Yield each non-blank line of a JSON-lines file as (value, "path:line", line number); DataError if invalid."""
    with open(path, encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                yield json.loads(line), where, line_no
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON: {exc.msg}") from exc


def read_jsonl(path: Path) -> Dataset:
    """Read JSON lines, one object with `text` and `label` (optional `category`, `group`, `domain`)."""
    data = Dataset()
    for row, where, line_no in json_lines(path):
        _generic_row(data, row, where, f"row{line_no}")
    return data


def detect_format(path: Path) -> str:
    """Guess the file format from its extension and first line."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        first = handle.readline()
    if first.lstrip().startswith("{"):
        return "jsonl"
    if suffix == ".csv" or "," in first and "\t" not in first:
        if "gahd_id" in first:
            return "gahd"
        return "germeval2021" if "Sub1_Toxic" in first else "csv"
    return "germeval2018"


_READERS = {"germeval2018": read_germeval2018, "germeval2021": read_germeval2021, "gahd": read_gahd,
            "csv": read_generic_csv, "jsonl": read_jsonl}


def read_dataset(path: str | Path, fmt: str | None = None) -> Dataset:
    """Read one labelled file (format auto-detected unless given) and record its provenance."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    fmt = fmt or detect_format(path)
    if fmt not in _READERS:
        raise DataError(f"{path}: unknown format {fmt!r}")
    try:
        data = _READERS[fmt](path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text: {exc}") from exc
    if not data.texts:
        raise DataError(f"{path}: no rows")
    # Group keys are per file, so two files never share a group by accident.
    data.groups = [f"{path.name}:{g}" for g in data.groups]
    if not data.domains:  # generic and GAHD files say it per row; the GermEval files are one genre each
        data.domains = [TWEET if fmt == "germeval2018" else SERVED_DOMAIN] * len(data.texts)
    data.files = [path.name] * len(data.texts)
    data.sources = [{"path": path.name, "format": fmt, "sha256": file_sha256(path),
                     "rows": len(data.texts), "offensive": sum(data.labels)}]
    return data


def read_datasets(paths: list[str | Path]) -> Dataset:
    """Read and concatenate several labelled files."""
    data = Dataset()
    for path in paths:
        data.extend(read_dataset(path))
    return data
