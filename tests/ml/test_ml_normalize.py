"""Normalisation folds obfuscated spellings together and keeps track of original offsets."""

from __future__ import annotations

import pytest

from moderation.ml.normalize import (
    _POST_STEPS,
    _PRE_STEPS,
    _lower,
    normalize,
    normalize_with_offsets,
    original_span,
)

from .conftest import OBFUSCATED, random_texts


@pytest.mark.parametrize(("text", "expected"), [
    ("Idiot", "idiot"),
    ("I d i o t", "idiot"),
    ("I.d.i.o.t", "idiot"),
    ("I-d-i-o-t", "idiot"),
    ("I_d_i_o_t", "idiot"),
    ("Typisch L-ü-g-e-n-p-r-e-s-s-e", "typisch luegenpresse"),
    ("L ü g e n p r e s s e", "luegenpresse"),
    ("L-u\u0308-g-e-n", "luegen"),
    ("Ä.r.g.e.r", "aerger"),
    ("S_c_h_e_i_ß_e", "scheisse"),
    ("Ö k o", "oeko"),
    ("1-d-1-0-t", "idiot"),
    ("Ä-B", "ae-b"),  # two letters are a normal hyphenation, not an evasion
    ("a. b. c", "a. b. c"),
    ("x-y.z", "x-y.z"),
    ("1d10t", "idiot"),
    ("Iiiiidiot", "idiot"),
    ("IDIOOOOT", "idiot"),
    ("duuuuumm", "dumm"),
    ("Arschl0ch", "arschloch"),
    ("A****loch", "a*loch"),
    ("Schl@mpe", "schlampe"),
    ("$chw3in", "schwein"),
    ("Ärger", "aerger"),
    ("Aerger", "aerger"),
    ("Straße", "strasse"),
    ("ÖKO Übel", "oeko uebel"),
    ("Na\u0308rrin", "naerrin"),
    ("Café", "cafe"),
    ("𝐈𝐝𝐢𝐨𝐭", "idiot"),
    ("@USER hallo", "xuser hallo"),
    ("@MEDIUM @MODERATOR", "xuser xuser"),
    ("@irgendwer_42 na und", "xuser na und"),
    ("erste Zeile|LBR|zweite", "erste zeile zweite"),
    ("siehe https://example.org/a?b=1 hier", "siehe xurl hier"),
    ("www.example.org", "xurl"),
    ("so lustig 😂😂", "so lustig xlachen xlachen"),
    ("🖕", "xmittelfinger"),
    ("🦄", "xemoji"),
    ("👍🏽", "xdaumenhoch"),
    ("#Wahl2025 jetzt", "wahl2025 jetzt"),
    ("G20 und CO2 im Jahr 2018 für 1000 Euro", "g20 und co2 im jahr 2018 fuer 1000 euro"),
    ("Was?!?!?!?!", "was?!?!?!?!"),
    ("Nein!!!!!!", "nein!!!"),
    ("  viel   Platz\t\nhier  ", "viel platz hier"),
    ("z.B. und d.h.", "z.b. und d.h."),
])
def test_normalize_table(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("variant", ["A****loch", "Arschl0ch", "ARSCHLOOOOCH", "A r s c h l o c h"])
def test_masked_and_obfuscated_share_char_ngrams_with_plain_word(variant):
    plain = normalize("Arschloch")
    norm = normalize(variant)
    assert norm[-4:] == plain[-4:] and norm[0] == plain[0]


@pytest.mark.parametrize("text", OBFUSCATED + random_texts(200, seed=1))
def test_offsets_agree_with_normalize(text):
    norm, starts, ends = normalize_with_offsets(text)
    assert norm == normalize(text)
    assert len(starts) == len(ends) == len(norm)
    assert all(0 <= s <= e <= len(text) for s, e in zip(starts, ends, strict=True))
    assert starts == sorted(starts)
    assert ends == sorted(ends)  # the fast path relies on it to map words back


@pytest.mark.parametrize(("text", "word", "original"), [
    ("Du bist ein I d i o t!", "idiot", "I d i o t"),
    ("Hallo @USER, du 1d10t", "idiot", "1d10t"),
    ("So ein Ärgernis", "aergernis", "Ärgernis"),
    ("Naja Iiiiidiot halt", "idiot", "Iiiiidiot"),
    ("Typisch L-ü-g-e-n-p-r-e-s-s-e!", "luegenpresse", "L-ü-g-e-n-p-r-e-s-s-e"),
    ("Du Ä.r.g.e.r", "aerger", "Ä.r.g.e.r"),
])
def test_offsets_map_words_back_to_original(text, word, original):
    norm, starts, ends = normalize_with_offsets(text)
    begin = norm.index(word)
    start, end = original_span(starts, ends, begin, begin + len(word))
    assert text[start:end] == original


def _normalize_without_guards(text: str) -> str:
    for _, pattern, repl in _PRE_STEPS:
        text = pattern.sub(repl, text)
    text = _lower(text)
    for _, pattern, repl in _POST_STEPS:
        text = pattern.sub(repl, text)
    return text.strip()


@pytest.mark.parametrize("text", OBFUSCATED + random_texts(300, seed=2) + ["WWW.Example.org x", "a://b"])
def test_guards_only_skip_steps_that_would_not_match(text):
    assert normalize(text) == _normalize_without_guards(text)
