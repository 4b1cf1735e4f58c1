"""Fixtures for the ML tests: a dozen hand-written German comments and a tiny trained model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from moderation.ml import load_model, train_and_save

# Written for these tests; not taken from any dataset.
TINY = [
    ("Du bist ein Idiot", 1, "insult"),
    ("Halt die Fresse, du Arschloch", 1, "profanity"),
    ("So ein dummer Vollidiot", 1, "insult"),
    ("Diese Leute sind Abschaum und gehören weggesperrt", 1, "abuse"),
    ("Du Trottel hast keine Ahnung", 1, "insult"),
    ("Verpiss dich, du Penner", 1, "profanity"),
    ("Danke für den guten Artikel", 0, None),
    ("Ich sehe das anders, aber gut erklärt", 0, None),
    ("Schönes Wetter heute in Berlin", 0, None),
    ("Die Regierung sollte mehr in Schulen investieren", 0, None),
    ("Wann kommt die nächste Folge?", 0, None),
    ("Sehr interessante Diskussion hier, liebe Grüße", 0, None),
]

OBFUSCATED = [
    "Du bist ein I d i o t", "1d10t!!!", "Iiiiiidiot", "A****loch", "Arschl0ch",
    "@USER du Depp 😡", "Ärger über Aerger", "Straße|LBR|Strasse", "https://example.org/x",
    "", " ", "😂😂😂", "$chw3in", "I.d.i.o.t", "Vollidiot!!!", "gut gemacht 👍",
]


def random_texts(count: int, seed: int = 0) -> list[str]:
    """Return random strings over letters, umlauts, digits, punctuation, emoji and spaces."""
    rng = random.Random(seed)
    alphabet = list("abcdefghijklmnopqrstuvwxyzäöüßABCDEFGHIJÄÖÜ0123456789 .,!?*@#$-_'\"\t\n")
    alphabet += ["|LBR|", "@USER ", " idiot ", " danke ", "😂", "👍", "🖕", "\u0308", "ﬁ", "İ"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
            for _ in range(count)]


@pytest.fixture(scope="session")
def tiny_rows() -> list[tuple[str, int, str | None]]:
    """Return the dozen hand-written labelled comments."""
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Train once on the dozen comments and return the model folder."""
    out = tmp_path_factory.mktemp("tiny-model")
    texts, labels, categories = zip(*TINY, strict=True)
    train_and_save(list(texts), list(labels), out, categories=list(categories), seed=0,
                   sources=[{"path": "tiny", "rows": len(TINY)}])
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """Return the tiny model, loaded."""
    return load_model(tiny_model_dir)


@pytest.fixture
def tiny_jsonl(tmp_path) -> Path:
    """Write the dozen comments as JSON lines and return the path."""
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y, "category": c}) + "\n"
                            for t, y, c in TINY), encoding="utf-8")
    return path
