"""Normalisation folds obfuscated spellings together and keeps track of original offsets."""

from __future__ import annotations

import pickle

import pytest

from moderation.ml.normalize import (
    _PLAIN_POST_STEPS,
    _PRE_STEPS,
    Unmasker,
    _lower,
    normalize,
    normalize_with_offsets,
    original_span,
)
from moderation.ml.pipeline import TextNormalizer

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
    for _, pattern, repl in _PLAIN_POST_STEPS:
        text = pattern.sub(repl, text)
    return text.strip()


@pytest.mark.parametrize("text", OBFUSCATED + random_texts(300, seed=2) + ["WWW.Example.org x", "a://b"])
def test_guards_only_skip_steps_that_would_not_match(text):
    assert normalize(text) == _normalize_without_guards(text)


# Written for these tests. Rows holding each word: arschloch, fresse, hurensohn, scheisse, dumm and
# mies 3 offensive; mist 4 offensive and 1 other; gurke 2 offensive (too few); kommt 3 and 3 (not
# typical of offensive rows).
UNMASK_ROWS = [
    ("Du Arschloch, halt die Fresse", 1), ("So ein Arschloch, Fresse zu, mies", 1),
    ("Arschloch! Halt die Fresse, Hurensohn", 1), ("Was für eine Scheiße, Hurensohn, mies", 1),
    ("Scheiße, du Hurensohn, so mies", 1), ("Scheiße und Mist, du bist dumm", 1),
    ("Mist, du bist so dumm, Gurke", 1), ("Mist, dumm, kommt schon wieder", 1),
    ("Mist, kommt die Gurke", 1), ("Er kommt, der Idiot", 1),
    ("Wann kommt der Bus? So ein Mist", 0), ("Er kommt morgen", 0), ("Sie kommt gleich, danke", 0),
    ("Die Lehrerinnen und Lehrer streiken", 0), ("Ein Hoch auf die Lehrerinnen", 0),
]


@pytest.fixture(scope="module")
def unmasker() -> Unmasker:
    return Unmasker.learn([normalize(t) for t, _ in UNMASK_ROWS], [y for _, y in UNMASK_ROWS])


@pytest.mark.parametrize(("text", "expected"), [
    ("Du A****loch", "du arschloch"),        # as many letters hidden as there are asterisks
    ("Du Arsch****", "du arschloch"),
    ("Halt die Fr***e", "halt die fresse"),  # "ß" hidden by one asterisk is "ss" after folding
    ("So eine Sch***e", "so eine scheisse"),
    ("A*loch", "arschloch"),                 # one asterisk between letters may hide several
    ("Hu*****hn!", "hurensohn!"),
    ("Mi**", "mist"),                        # in more offensive rows than "mies", though rarer elsewhere
    ("Lehrer*innen", "lehrer*innen"),        # a gender star stays: no candidate fits
    ("Ko**t", "ko*t"),                       # "kommt" is as common in the other rows
    ("Gu**e", "gu*e"),                       # "gurke" is in too few offensive rows
    ("d***", "d*"),                          # one visible letter is too little to go on ("dumm")
    ("Danke, du*!", "danke, du*!"),          # a single trailing asterisk is no mask ("dumm")
    ("A****l0ch", "a*loch"),                 # a mask with leetspeak is left to the rules
    ("a****loch@web.de", "a*lochaweb.de"),   # "@" is part of the word (leetspeak reads it as "a")
    ("Arschloch", "arschloch"),
])
def test_masked_words_are_restored_from_training_words(unmasker, text, expected):
    assert normalize(text, unmasker) == expected
    assert normalize_with_offsets(text, unmasker)[0] == expected


def _unmasked_without_guards(text: str, unmasker: Unmasker) -> str:
    for _, pattern, repl in _PRE_STEPS:
        text = pattern.sub(repl, text)
    text = _lower(text)
    for _, pattern, repl in unmasker.steps:
        text = pattern.sub(repl, text)
    return text.strip()


@pytest.mark.parametrize("text", OBFUSCATED + random_texts(200, seed=3) + ["Du A****loch", "Fr***e*"])
def test_guards_only_skip_steps_that_would_not_match_when_unmasking(unmasker, text):
    assert normalize(text, unmasker) == _unmasked_without_guards(text, unmasker)


def test_long_runs_of_asterisks_are_squeezed():
    assert normalize("*" * 5000 + "a") == "*a"
    assert normalize("x " + "*" * 5000) == "x ***"


def test_a_restored_word_maps_back_to_the_masked_span(unmasker):
    text = "Du bist ein A*loch!"
    norm, starts, ends = normalize_with_offsets(text, unmasker)
    begin = norm.index("arschloch")
    assert text[slice(*original_span(starts, ends, begin, begin + len("arschloch")))] == "A*loch"


def test_the_unmasker_survives_pickling_and_keeps_only_its_candidates(unmasker):
    copy = pickle.loads(pickle.dumps(unmasker))
    assert normalize("Halt die Fr***e, du A****loch", copy) == "halt die fresse, du arschloch"
    assert copy.candidates == unmasker.candidates
    assert set(unmasker.candidates) == {"arschloch", "fresse", "hurensohn", "scheisse", "dumm", "mies", "mist"}
    assert unmasker.candidates["mist"] == (4, 1)


def test_without_an_unmasker_masks_are_squeezed():
    assert normalize("Du A****loch") == "du a*loch"


def test_the_pipeline_normaliser_learns_unmasking_from_labels():
    texts, labels = [t for t, _ in UNMASK_ROWS], [y for _, y in UNMASK_ROWS]
    fitted = TextNormalizer(unmask=True).fit(texts, labels)
    assert fitted.transform(["Du A****loch"]) == ["du arschloch"]
    # Fitting inside a pipeline (fit_transform) gives what fit, then transform give.
    assert TextNormalizer(unmask=True).fit_transform(texts + ["Du A****loch"], labels + [1]) == \
        TextNormalizer(unmask=True).fit(texts + ["Du A****loch"], labels + [1]).transform(texts + ["Du A****loch"])
    assert TextNormalizer(unmask=True).fit(texts).transform(["Du A****loch"]) == ["du a*loch"]  # no labels
    assert TextNormalizer(unmask=False).fit(texts, labels).transform(["Du A****loch"]) == ["du a*loch"]
    stored_before_unmasking = TextNormalizer()
    del stored_before_unmasking.unmask  # as unpickled from a model trained before this option
    stored_before_unmasking.n_features_in_ = 1
    assert stored_before_unmasking.transform(["Du A****loch"]) == ["du a*loch"]
