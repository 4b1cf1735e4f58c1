"""Property tests for the text cleaner, the validators and the normaliser: hostile Unicode never breaks them."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moderation.ml import normalize, normalize_with_offsets
from moderation.text import clean_text, html_to_text

HOSTILE = st.sampled_from(["\x00", "\ud800", "\udfff", "\u202e", "\u2066", "\u200b", "\ufeff", "\r", "\u0301",
                           "𝕀𝕕𝕚𝕠𝕥", "A****loch", "|LBR|", "@USER", "ß", "ẞ", "\U0001f92c"])
TEXT = st.lists(st.one_of(st.text(max_size=30), HOSTILE), max_size=20).map("".join)


@given(TEXT)
@settings(max_examples=300, deadline=None)
def test_clean_text_leaves_no_controls_and_is_idempotent(raw):
    cleaned = clean_text(raw)
    assert cleaned == clean_text(cleaned)
    assert cleaned == cleaned.strip()
    assert unicodedata.is_normalized("NFC", cleaned)
    for ch in cleaned:
        assert ch in "\n\t" or unicodedata.category(ch) not in {"Cc", "Cs"}
        assert ch not in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    cleaned.encode("utf-8")  # storable: no lone surrogates


def test_clean_text_removes_exactly_controls_surrogates_and_bidi_overrides():
    """Every code point: removed iff category Cc (but line break and tab), Cs, or a bidi override/isolate."""
    bidi = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
    wrong = []
    for code in range(0x110000):
        ch = chr(code)
        expected = ch not in "\n\t\r" and (unicodedata.category(ch) in {"Cc", "Cs"} or ch in bidi)
        if (clean_text(f"a{ch}b") == "ab") != expected:
            wrong.append(hex(code))
    assert wrong == []


@given(TEXT)
@settings(max_examples=300, deadline=None)
def test_normaliser_never_fails_and_offsets_point_into_the_text(raw):
    folded = normalize(raw)
    again, starts, ends = normalize_with_offsets(raw)
    assert again == folded
    assert len(starts) == len(ends) == len(folded)
    assert all(0 <= s <= e <= len(raw) for s, e in zip(starts, ends, strict=True))


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_html_to_text_never_fails(raw):
    html_to_text(raw).encode("utf-8")


@pytest.mark.parametrize("raw", [
    "a" + "\u0301" * 5000,
    "\x00" * 5000,
    "\ud800" * 100 + "Hallo",
    "\u202eHallo\u202c",
    "🤬" * 3000,
])
def test_extreme_inputs(raw):
    normalize(raw)
    clean_text(raw).encode("utf-8")


@pytest.mark.parametrize("text", [
    "a" + "\u0301" * 5000,          # 5,000 combining marks
    "Hallo\x00Welt",                 # NUL byte
    "\u202eHallo, ich bin harmlos",  # right-to-left override
    "Gut\ud800 gemacht",             # lone surrogate (valid in JSON as an escape)
])
def test_api_accepts_or_refuses_hostile_text_cleanly(client, auth, count_rows, text):
    before = count_rows()
    response = client.post("/v1/articles/fuzz/comments", headers=auth["backend"],
                           json={"author_id": "f", "author_name": "F", "text": text})
    assert response.status_code in {201, 422}, response.json
    if response.status_code == 201:
        stored = response.json["text"]
        assert "\x00" not in stored and "\u202e" not in stored and "\ud800" not in stored
        assert len(stored) <= 5000
    else:
        assert response.json["error"]["fields"].keys() == {"text"}
        assert count_rows() == before
