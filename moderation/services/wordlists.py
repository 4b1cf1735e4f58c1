"""Word lists: banned terms reject, suspect terms hold; matched on the normalised text (`moderation.ml.normalize`,
without the model's learned unmasking: a term's own `*` wildcard and the squeezed masks cover masked spellings)."""

from __future__ import annotations

import threading
import time
from functools import lru_cache

from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session

from moderation.errors import InvalidInput
from moderation.ml import normalize
from moderation.models import BANNED, SUSPECT, Term
from moderation.services.termmatch import MAX_WILDCARDS, Matcher, term_pattern

MAX_TERMS = 5000


def clean_terms(raw: list[str], field: str) -> list[str]:
    """Validate and deduplicate one list of terms, keeping the moderators' spelling."""
    terms: list[str] = []
    seen: set[str] = set()
    errors: list[str] = []
    for index, term in enumerate(raw):
        term = " ".join(term.split())
        if len(term) > 200:
            errors.append(f"Entry {index} is longer than 200 characters.")
        elif not normalize(term.replace("*", "")) or not (pattern := term_pattern(term)).replace("*", ""):
            errors.append(f"Entry {index} is empty after normalisation.")
        elif pattern.count("*") > MAX_WILDCARDS:
            errors.append(f"Entry {index} has more than {MAX_WILDCARDS} wildcards (`*`): "
                          "a wildcard stands for letters inside a word, as in Drecks*, *loch or A*loch.")
        elif term.lower() not in seen:
            seen.add(term.lower())
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
