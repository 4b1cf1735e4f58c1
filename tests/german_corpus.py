"""A few hundred German reader comments, composed from parts written for these tests."""

from __future__ import annotations

import itertools
import random

_FRIENDLY_OPENERS = ["Danke für", "Interessant finde ich", "Gut recherchiert ist", "Ich schätze",
                     "Sehr hilfreich war", "Spannend ist", "Wichtig finde ich", "Lesenswert ist"]
_TOPICS = ["den Bericht über die Radwege", "die Analyse zur Inflation", "das Interview mit der Bürgermeisterin",
           "die Grafik zum Wohnungsmarkt", "den Kommentar zur Schulreform", "die Reportage aus dem Hafen",
           "den Artikel über das Stadtfest", "die Recherche zum Klinikum"]
_FRIENDLY_CLOSERS = ["– weiter so!", ", vielen Dank.", ", das hat mir geholfen.", ", gerne mehr davon.",
                     ", ich sehe das ähnlich."]
_INSULT_OPENERS = ["Du bist ein", "Der Autor ist ein", "Was für ein", "Halt die Klappe, du", "Typisch für so einen"]
_INSULTS = ["dummer Idiot", "hirnloser Vollidiot", "widerlicher Drecksack", "erbärmlicher Schwachkopf",
            "verlogener Mistkerl", "elender Trottel", "armseliger Depp", "ekelhafter Hetzer"]
_INSULT_CLOSERS = ["!", ", verschwinde endlich.", ", niemand will dich hier.", ", halt dein Maul.",
                   ", unfassbar dumm."]


def friendly(n: int, seed: int = 0) -> list[str]:
    combos = list(itertools.product(_FRIENDLY_OPENERS, _TOPICS, _FRIENDLY_CLOSERS))
    random.Random(seed).shuffle(combos)
    return [f"{a} {b}{c}" if c.startswith(",") else f"{a} {b} {c}" for a, b, c in combos[:n]]


def toxic(n: int, seed: int = 0) -> list[str]:
    combos = list(itertools.product(_INSULT_OPENERS, _INSULTS, _INSULT_CLOSERS))
    random.Random(seed).shuffle(combos)
    return [f"{a} {b}{c}" for a, b, c in combos[:n]]
