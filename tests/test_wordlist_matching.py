"""Word-list matching: the same answers as a regular expression per term, in time linear in the comment,
and outside the write transaction."""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url

from moderation.errors import InvalidInput
from moderation.ml import normalize
from moderation.models import BANNED, SUSPECT
from moderation.services.wordlists import MAX_TERMS, Matcher, clean_terms
from tests.conftest import FRIENDLY
from tests.moderation_helpers import submit
from tests.servers import ROOT
from tests.test_bad_input import assert_error
from tests.test_sqlite_writers import lock_is_free

WORD = "a-z0-9äöüß"
WORDS = "/v1/moderation/wordlists"


def reference_find(terms: list[str], text: str) -> list[str]:
    """What matching answered before it was rewritten: a regular expression per term, every masked word
    compared with every term. One change is intended: a masked word showing neither its first nor its
    last letter ("*", a list bullet; "*rsch*") fits no term; before, "*" fitted every term."""
    folded = normalize(text)
    found = []
    for term in terms:
        body = f"[{WORD}]*".join(re.escape(normalize(part)) for part in term.split("*"))
        if re.search(f"(?<![{WORD}]){body}(?![{WORD}])", folded):
            found.append(term)
    for token in re.findall(rf"[{WORD}]*\*[{WORD}*]*", folded):
        if token.startswith("*") and token.endswith("*"):
            continue
        masked = re.compile(".*".join(re.escape(p) for p in token.split("*")))
        for term in terms:
            plain = normalize(term.replace("*", ""))
            if term not in found and len(plain) >= 4 and masked.fullmatch(plain):
                found.append(term)
    return found


def test_matching_answers_as_a_regular_expression_per_term():
    # Small alphabets make terms and texts meet often: words, umlauts, leet digits, punctuation, masks.
    rng = random.Random(18)
    term_chars, text_chars = "abäA0 -!*", "abäßA0x -!.*"
    compared = matched = 0
    for _ in range(1500):
        raw = ["".join(rng.choice(term_chars) for _ in range(rng.randint(1, 7))) for _ in range(rng.randint(1, 4))]
        try:
            terms = clean_terms(raw, BANNED)
        except InvalidInput:
            continue
        text = "".join(rng.choice(text_chars) for _ in range(rng.randint(0, 30)))
        expected = reference_find(terms, text)
        assert Matcher.build({BANNED: terms}).find(BANNED, text) == expected, (terms, text)
        compared += 1
        matched += bool(expected)
    assert compared > 1000 and matched > 250  # the comparison met many matches, not only misses


MATCHER = Matcher.build({
    BANNED: ["Arschloch", "Drecks*", "*ab*ab*ab*x", "halt die Fresse", "C++", "Lügen* Presse", "Ιδιώτης"],
    SUSPECT: ["Lügenpresse"],
})


@pytest.mark.parametrize(("text", "banned"), [
    ("Du A****loch", ["Arschloch"]),
    ("Du Arschl*ch", ["Arschloch"]),
    ("Du *rschloch", ["Arschloch"]),
    ("Du A r s c h l 0 c h", ["Arschloch"]),
    ("Dreckspack!", ["Drecks*"]),
    ("abababx", ["*ab*ab*ab*x"]),
    ("ab" * 2000 + "x", ["*ab*ab*ab*x"]),
    ("ab" * 2000, []),
    ("ababab x", []),  # `*` stands for letters inside a word only
    ("Halt die Fresse!", ["halt die Fresse"]),
    ("halt die fressen", []),
    ("C++ ist schnell", ["C++"]),
    ("C++x", []),
    ("Lügenxpresse", ["Lügen* Presse"]),  # as before: the space after `*` goes with the part's normalising
    ("ιδιώτης", ["Ιδιώτης"]),
    # A list bullet or footnote star shows no letter of a word: it masks nothing (before, every term).
    ("* Anmerkung: gut gemacht", []),
    ("Sterne * hier", []),
    ("ein *rsch* hier", []),
])
def test_matching_cases(text, banned):
    assert MATCHER.find(BANNED, text) == banned
    assert MATCHER.find_all(text).get(BANNED, []) == banned


def test_find_all_answers_per_kind_and_nothing_without_lists():
    matcher = Matcher.build({BANNED: ["Arschloch", "Drecks*"], SUSPECT: ["Lügenpresse"]})
    assert matcher.find_all("Typisch Luegenpresse, du Arschloch") == {BANNED: ["Arschloch"], SUSPECT: ["Lügenpresse"]}
    assert matcher.find_all(FRIENDLY[0]) == {}
    assert Matcher.build({BANNED: [], SUSPECT: []}).find_all("Arschloch") == {}


def test_direct_matches_come_first_in_list_order_then_masked_ones():
    matcher = Matcher.build({BANNED: ["Zecke", "Arschloch", "Idiot", "Affe"]})
    assert matcher.find(BANNED, "A****loch, Idiot und Zecke, Z***e") == ["Zecke", "Idiot", "Arschloch"]


@pytest.mark.parametrize(("term", "accepted"), [
    ("*ab*ab*ab*x", True), ("A****loch", True), ("*a*b*c*", True), ("a**b**c**d**e", True),
    ("*a*b*c*d*", False), ("a*b*c*d*e*f", False),
])
def test_clean_terms_allows_four_wildcards(term, accepted):
    if accepted:
        assert clean_terms([term], BANNED) == [term]
    else:
        with pytest.raises(InvalidInput) as refused:
            clean_terms([term], BANNED)
        assert refused.value.fields == {BANNED: [
            "Entry 0 has more than 4 wildcards (`*`): a wildcard stands for letters inside a word, "
            "as in Drecks*, *loch or A*loch."]}


def test_too_many_wildcards_are_refused_and_nothing_is_stored(client, auth, count_rows):
    client.put(WORDS, headers=auth["moderator"], json={"banned": ["Idiot"], "suspect": []})
    before = count_rows()
    response = client.put(WORDS, headers=auth["moderator"], json={"banned": ["Depp", "*a*b*c*d*e"], "suspect": []})
    assert_error(response, 422, "validation_failed", {"banned"})
    assert "Entry 1 has more than 4 wildcards" in response.json["error"]["fields"]["banned"][0]
    assert count_rows() == before
    assert client.get(WORDS, headers=auth["moderator"]).json == {"banned": ["Idiot"], "suspect": []}


# The worst cases of the security audit, at the largest lists allowed: run in a child process, so that a
# return of super-linear matching fails this test after TIMEOUT seconds instead of stalling the suite.
BUDGET_SECONDS = 2.0
TIMEOUT = 120
PATHOLOGICAL = ["*ab*ab*ab*x", "*a*a*a*a", "a*a*a*a*b", "*ab*ab*ab*", "*ba*ba*ba*q", "a*b*a*b*a",
                "*aba*aba*y", "ab*ab*ab*ab*z"]


def worst_case_lists() -> dict[str, list[str]]:
    """MAX_TERMS terms per list: the pathological wildcard terms, more like them, words, `*` terms, phrases."""
    lists = {}
    for kind, seed in ((BANNED, 1), (SUSPECT, 2)):
        rng = random.Random(seed)
        terms = {term.lower(): term for term in PATHOLOGICAL}
        while len(terms) < 500:  # wildcard terms made of a, b and ab, which the comments below are full of
            term = "*".join(rng.choice(["a", "b", "ab", "ba"]) for _ in range(rng.randint(2, 5))) + "q"
            terms[term] = term
        syllables = [c + v for c in "bdfgklmnprstz" for v in "aeiouäü"]
        while len(terms) < MAX_TERMS:
            word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
            term = rng.choice([word, word, word, f"{word[:4]}*", f"*{word[-4:]}", f"a{word}", f"halt die {word}"])
            terms[term.lower()] = term
        lists[kind] = clean_terms(list(terms.values()), kind)
    return lists


def worst_case_texts() -> dict[str, str]:
    """Comments of up to 5,000 characters (MODERATION_MAX_TEXT_LENGTH) that made matching take seconds."""
    rng = random.Random(3)
    return {
        "a* repeated": ("a* " * 1667)[:5000],
        "ab repeated, one word": "ab" * 2500,
        "ab repeated, then x": "ab" * 2499 + "x",
        "ab words": ("ab " * 1667)[:5000],
        "ab*ab masks": ("ab*ab*ab " * 556)[:5000],
        "distinct masks": " ".join(f"a*{rng.choice('bdfgk')}{rng.choice('aeiou')}{i}" for i in range(900))[:5000],
        "random a, b, space, star": "".join(rng.choice("ab *") for _ in range(5000)),
        "phrase starts": ("halt die " * 556)[:5000],
    }


def measure_worst_cases() -> dict:
    """Time matching each worst case against both lists (what a submission does); return seconds and matches."""
    import time

    lists = worst_case_lists()
    matcher = Matcher.build(lists)
    out = {"sizes": {kind: len(terms) for kind, terms in lists.items()}, "seconds": {}, "banned": {}}
    for name, text in worst_case_texts().items():
        start = time.perf_counter()
        banned, _ = matcher.find(BANNED, text), matcher.find(SUSPECT, text)
        out["seconds"][name] = time.perf_counter() - start
        out["banned"][name] = banned
    return out


def test_worst_cases_at_the_largest_lists_take_well_under_a_second_each():
    code = "import json; from tests.test_wordlist_matching import measure_worst_cases as m; print(json.dumps(m()))"
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                              timeout=TIMEOUT, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"matching the worst cases did not finish within {TIMEOUT} s")
    result = json.loads(done.stdout)
    assert result["sizes"] == {BANNED: MAX_TERMS, SUSPECT: MAX_TERMS}
    assert all(len(text) <= 5000 for text in worst_case_texts().values())
    assert sum(result["seconds"].values()) < BUDGET_SECONDS, result["seconds"]
    # The matching really ran: the pathological terms are found where they fit, and only there.
    assert "*ab*ab*ab*x" in result["banned"]["ab repeated, then x"]
    assert "*ab*ab*ab*x" not in result["banned"]["ab repeated, one word"]
    assert "*ab*ab*ab*" in result["banned"]["ab repeated, one word"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_word_lists_are_matched_outside_the_write_transaction(client, auth, database_url, monkeypatch):
    client.put(WORDS, headers=auth["moderator"], json={"banned": ["Arschloch"], "suspect": ["Lügenpresse"]})
    database = make_url(database_url).database
    probes = []

    def another_writer_could_start() -> tuple[bool, bool]:
        """(this service's writer lock is free, SQLite's write lock is free): while matching, both must be."""
        other = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            sqlite_free = True
        except sqlite3.OperationalError:  # database is locked
            sqlite_free = False
        finally:
            other.close()
        return lock_is_free(Path(f"{database}-writer.lock")), sqlite_free

    for name in ("find", "find_all"):  # what a submission calls (matching before this fix had `find` only)
        if not hasattr(Matcher, name):
            continue
        original = getattr(Matcher, name)

        def probing(self, *args, _original=original):
            probes.append(another_writer_could_start())
            return _original(self, *args)

        monkeypatch.setattr(Matcher, name, probing)
    comment = submit(client, auth, text=f"{FRIENDLY[0]} Du A****loch.")
    assert comment["status"] == "rejected" and "banned_term" in comment["reasons"]
    assert probes and all(probe == (True, True) for probe in probes), probes
