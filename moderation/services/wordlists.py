"""Word lists: banned terms reject, suspect terms hold; matched on the normalised text (`moderation.ml.normalize`,
without the model's learned unmasking: a term's own `*` wildcard and the squeezed masks cover masked spellings)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from moderation.errors import InvalidInput
from moderation.ml import normalize
from moderation.models import BANNED, SUSPECT, Term

MAX_TERMS = 5000
_WORD = "a-z0-9äöüß"


def _term_pattern(term: str) -> str:
    """Regex for one term: normalised like the text, `*` in the term as a wildcard, whole words."""
    parts = [re.escape(normalize(part)) for part in term.split("*")]
    body = f"[{_WORD}]*".join(parts)
    return f"(?<![{_WORD}]){body}(?![{_WORD}])"


@dataclass(frozen=True)
class Matcher:
    """Compiled word lists; `find` returns the terms of one kind a text contains."""

    terms: dict[str, tuple[str, ...]]
    patterns: dict[str, list[tuple[str, re.Pattern[str]]]]

    @classmethod
    def build(cls, terms: dict[str, list[str]]) -> Matcher:
        return cls(
            terms={kind: tuple(values) for kind, values in terms.items()},
            patterns={kind: [(t, re.compile(_term_pattern(t))) for t in values] for kind, values in terms.items()},
        )

    def find(self, kind: str, text: str) -> list[str]:
        """Return the terms of `kind` found in `text`, evasions included."""
        if not self.patterns.get(kind):
            return []
        folded = normalize(text)
        found = [term for term, pattern in self.patterns[kind] if pattern.search(folded)]
        # A masked word in the text ("A****loch" -> "a*loch") matches a term its visible letters fit.
        for token in re.findall(rf"[{_WORD}]*\*[{_WORD}*]*", folded):
            masked = re.compile(".*".join(re.escape(p) for p in token.split("*")))
            for term, _ in self.patterns[kind]:
                plain = normalize(term.replace("*", ""))
                if term not in found and len(plain) >= 4 and masked.fullmatch(plain):
                    found.append(term)
        return found


def clean_terms(raw: list[str], field: str) -> list[str]:
    """Validate and deduplicate one list of terms, keeping the moderators' spelling."""
    terms: list[str] = []
    errors: list[str] = []
    for index, term in enumerate(raw):
        term = " ".join(term.split())
        if not term or not normalize(term.replace("*", "")).strip():
            errors.append(f"Entry {index} is empty after normalisation.")
        elif len(term) > 200:
            errors.append(f"Entry {index} is longer than 200 characters.")
        elif term.lower() not in {t.lower() for t in terms}:
            terms.append(term)
    if len(terms) > MAX_TERMS:
        errors.append(f"At most {MAX_TERMS} terms.")
    if errors:
        raise InvalidInput(f"{field} has invalid entries", fields={field: errors})
    return terms


def get_wordlists(session: Session) -> dict[str, list[str]]:
    """Return both lists, alphabetically."""
    lists: dict[str, list[str]] = {BANNED: [], SUSPECT: []}
    for kind, term in session.execute(select(Term.kind, Term.term).order_by(Term.kind, Term.term)):
        lists[kind].append(term)
    return lists


def replace_wordlists(session: Session, banned: list[str], suspect: list[str]) -> dict[str, list[str]]:
    """Replace both lists in one transaction."""
    banned, suspect = clean_terms(banned, BANNED), clean_terms(suspect, SUSPECT)
    session.execute(delete(Term))
    session.add_all([Term(kind=BANNED, term=t) for t in banned] + [Term(kind=SUSPECT, term=t) for t in suspect])
    session.flush()
    session.info[WORDLISTS_CHANGED] = True
    forget_cached_lists()
    return get_wordlists(session)


@lru_cache(maxsize=4)
def _compiled(banned: tuple[str, ...], suspect: tuple[str, ...]) -> Matcher:
    return Matcher.build({BANNED: list(banned), SUSPECT: list(suspect)})


# Each process re-reads the lists at most this often; a change applies at once in the process that made
# it and within this many seconds in every other worker and instance.
CACHE_SECONDS = 5.0
_cache: dict[str, tuple[Matcher, float]] = {}
_cache_lock = threading.Lock()
# Counts the forgets: lists read before one (by another thread of this worker) are not cached after it.
_generation = 0
# `Session.info` flag: this transaction replaced the lists; forget them again when it ends.
WORDLISTS_CHANGED = "wordlists_changed"


def forget_cached_lists() -> None:
    """Make the next submission re-read the word lists."""
    global _generation
    with _cache_lock:
        _generation += 1
        _cache.clear()


def load_matcher(session: Session) -> Matcher:
    """Return the matcher for the current lists (compiled once per distinct lists)."""
    database = str(session.get_bind().url)
    now = time.monotonic()
    cached = _cache.get(database)
    if cached is not None and cached[1] > now:
        return cached[0]
    generation = _generation
    lists = get_wordlists(session)
    matcher = _compiled(tuple(lists[BANNED]), tuple(lists[SUSPECT]))
    with _cache_lock:
        if generation == _generation:
            _cache[database] = (matcher, now + CACHE_SECONDS)
    return matcher


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _forget_after_replacing(session: Session) -> None:
    # Other threads may have read the old lists until the commit (or cached the new ones before a rollback).
    if session.info.pop(WORDLISTS_CHANGED, False):
        forget_cached_lists()
