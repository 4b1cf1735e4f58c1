"""The team's labelled threat examples (data/team/threats.jsonl): readable, balanced, grouped, and original."""

from __future__ import annotations

import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from moderation.ml.data import CATEGORIES, read_dataset
from tests.servers import ROOT

TEAM = ROOT / "data" / "team"
THREATS = TEAM / "threats.jsonl"
FIELDS = {"text", "label", "category", "group", "domain", "note"}
# The corpora live beside the project (README: ../shared/data); a worktree elsewhere names them here.
SHARED_DATA = Path(os.environ.get("MODERATION_TEST_SHARED_DATA", ROOT.parent / "shared" / "data"))
CORPUS_SUFFIXES = {".txt", ".csv", ".tsv", ".jsonl"}


def _key(text: str) -> str:
    """Compare texts without case, punctuation or spacing, so a lightly edited copy still counts as one."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    """The file's rows as raw JSON objects."""
    with open(THREATS, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def data():
    """The file as the training code reads it."""
    return read_dataset(THREATS)


def test_reader_accepts_every_row(data, rows):
    assert "threat" in CATEGORIES
    assert len(data.texts) == len(rows)
    assert data.sources[0]["format"] == "jsonl"
    assert set(data.domains) == {"comment"}
    assert set(data.categories) == {"threat", None}
    assert all(g.startswith("threats.jsonl:") for g in data.groups)


def test_fields_and_labels(rows):
    for number, row in enumerate(rows, start=1):
        assert set(row) == FIELDS, f"line {number}"
        assert row["label"] in (0, 1), f"line {number}"
        assert row["category"] == ("threat" if row["label"] else None), f"line {number}"
        assert row["domain"] == "comment", f"line {number}"
        assert isinstance(row["group"], str) and row["group"], f"line {number}"
        assert isinstance(row["note"], str) and row["note"], f"line {number}"


def test_counts(data):
    labels = Counter(data.labels)
    assert labels[1] >= 300 and labels[0] >= 300
    assert Counter(data.categories)["threat"] == labels[1]


def test_texts_unique_and_of_comment_length(data):
    keys = Counter(_key(t) for t in data.texts)
    assert [k for k, n in keys.items() if n > 1] == []
    words = [len(t.split()) for t in data.texts]
    assert min(words) >= 3 and max(words) <= 60
    # Many real comments are short; about 30 % of the rows are under ten words.
    assert 0.25 <= sum(w < 10 for w in words) / len(words) <= 0.40


def test_groups_tie_each_threat_to_its_contrasts(data, rows):
    members = defaultdict(list)
    for row in rows:
        members[row["group"]].append(row)
    for group, group_rows in members.items():
        if len(group_rows) > 1:  # a threat and its publishable rewrite(s), never two unrelated rows
            assert {r["label"] for r in group_rows} == {0, 1}, group
            assert all(r["note"] == "contrast" for r in group_rows if r["label"] == 0), group
    contrasts = [r for r in rows if r["note"] == "contrast"]
    assert len(contrasts) >= 200
    assert all(len(members[r["group"]]) > 1 for r in contrasts)


def test_readme_counts_match_the_file(rows):
    readme = (TEAM / "README.md").read_text(encoding="utf-8")
    table = {(label, note): int(count)
             for label, note, count in re.findall(r"^\| (\d) \| ([^|]+?) \| (\d+) \|$", readme, flags=re.M)}
    counts = Counter((str(r["label"]), r["note"]) for r in rows)
    assert table == dict(counts)
    assert f"{len(rows)} rows" in readme


def _corpus_files() -> list[Path]:
    if not SHARED_DATA.is_dir():
        return []
    return sorted(p for p in SHARED_DATA.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES)


@pytest.mark.skipif(not _corpus_files(), reason=f"no shared corpora at {SHARED_DATA}")
def test_no_row_copies_a_shared_corpus_row(data):
    corpus = set()
    for path in _corpus_files():
        corpus.update(_key(t) for t in read_dataset(path).texts)
    assert len(corpus) > 1000
    assert [t for t in data.texts if _key(t) in corpus] == []
