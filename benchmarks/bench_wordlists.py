"""Print how long word-list matching takes per comment: ordinary comments and the worst cases.

    .venv/bin/python benchmarks/bench_wordlists.py [--matcher FILE] [--against FILE] [--timeout S] [--smoke]
        [GERMEVAL2018_TSV GERMEVAL2021_CSV]

What a submission does with the lists, timed: `find_all(text)` (the matcher before it had no
`find_all`: then `find(banned)` and `find(suspect)`, as its submission did). First ordinary comments
(the scoring benchmark's sample of the GermEval comments, or a dozen built-in ones without the data)
against ordinary lists of 0, 30, 100, 1,000 and 5,000 terms per list, mostly words, some `*` terms and
some of several words; median and worst per comment. Then the worst cases found in the security audit,
at the largest lists allowed (5,000 banned and 5,000 suspect terms, among them pathological wildcard
terms such as `*ab*ab*ab*x`) and comments of up to 5,000 characters (MODERATION_MAX_TEXT_LENGTH):
repeated `a* `, `ab` and the like; each is matched three times, the fastest time shown. Before them,
the audit's own cases, once each: 1,000 terms and repeated `a* `; the one term `*ab*ab*ab*x` and 1,000,
2,000 and 5,000 characters of `ab`. Compiling the lists (once per version of the lists and process) is
timed too.

`--matcher FILE` times the `Matcher` class of another copy of `moderation/services/wordlists.py`, e.g.
main's before the rewrite (`git show main:moderation/services/wordlists.py > /tmp/old_wordlists.py`).
`--against FILE` times that copy's matcher as well on the ordinary comments, each comment by one matcher
and then the other, so that a busy machine slows both alike. A case that runs longer than `--timeout`
seconds is stopped and shown as `> S s`. `--smoke` runs a
small sample quickly (for the test suite: it checks that the script runs, not the figures).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import random
import signal
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_scoring import DEFAULT_FILES, machine_reference_ms, sample_texts  # noqa: E402  (this folder is sys.path[0])

from moderation.ml.data import read_datasets  # noqa: E402
from moderation.models import BANNED, SUSPECT  # noqa: E402
from moderation.services.wordlists import MAX_TERMS, MAX_WILDCARDS, clean_terms  # noqa: E402

MAX_TEXT = 5000
ORDINARY_SIZES = [0, 30, 100, 1000, 5000]
BUILT_IN_COMMENTS = [
    "Danke für den ausgewogenen Artikel, sehr informativ.",
    "Ich sehe das ähnlich, gute Argumente auf beiden Seiten. Aber die Stadt hat kein Geld dafür.",
    "Wann wird die Brücke in unserer Stadt endlich saniert? Seit Jahren passiert nichts!!!",
    "Halt die Fresse, du A****loch.",
    "Diese Volksverräter und ihre Lügenpresse, alles Dreckspack.",
    "Was für ein Schwachsinn. Der Autor hat keine Ahnung von Wirtschaft, das merkt man in jedem Satz.",
    "* Anmerkung der Redaktion: Der Kommentar wurde gekürzt.",
    "Liebe Lehrer*innen, danke für euren Einsatz in dieser schweren Zeit.",
    "Ich finde, die Gemeinde sollte mehr Radwege bauen. https://example.org/radwege",
    "@Leser123 Sie haben recht, aber das ist nur die halbe Wahrheit.",
    "Schei**e, schon wieder Stau auf der A8 😡",
    "Du I d i o t, lies doch erst mal den Artikel.",
]
PATHOLOGICAL = ["*ab*ab*ab*x", "*a*a*a*a", "a*a*a*a*b", "*ab*ab*ab*", "*ba*ba*ba*q", "a*b*a*b*a", "*aba*aba*y",
                "ab*ab*ab*ab*z"]


def words(count: int, seed: int) -> list[str]:
    """Distinct made-up German-looking words of 2 to 4 syllables."""
    syllables = [c + v for c in "bdfghklmnprstwz" for v in ["a", "e", "i", "o", "u", "ei", "au", "ä", "ü"]]
    rng = random.Random(seed)
    made: dict[str, None] = {}
    while len(made) < count:
        made["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))).capitalize()] = None
    return list(made)


def ordinary_list(count: int, seed: int) -> list[str]:
    """A list as moderators write one: four in five plain words, the rest `*` terms and short phrases."""
    made = words(count, seed)
    for index, word in enumerate(made):
        if index % 10 == 1:
            made[index] = word[:5] + "*"
        elif index % 10 == 3:
            made[index] = "*" + word[-4:].lower() + str(index)
        elif index % 20 == 5:
            made[index] = f"halt die {word}"
    return made


def pathological_list(count: int, seed: int) -> list[str]:
    """The largest list allowed, a tenth of it wildcard terms made to backtrack, the rest ordinary."""
    parts = ["a", "b", "ab", "ba", "aba"]
    nasty = list(PATHOLOGICAL)
    for size in (3, 4, 5):
        for chosen in itertools.product(parts, repeat=size):
            for lead, trail in (("*", ""), ("", "*"), ("*", "*"), ("", "")):
                if len(lead + trail) + size - 1 <= MAX_WILDCARDS:
                    nasty.append(lead + "*".join(chosen) + trail + ("" if trail else "q"))
    nasty = list(dict.fromkeys(nasty))[: count // 10]
    return nasty + ordinary_list(count - len(nasty), seed)


def worst_texts() -> dict[str, str]:
    """Comments of at most MAX_TEXT characters that made the old matching super-linear."""
    rng = random.Random(0)
    distinct_masks = " ".join(f"a*{word.lower()}" for word in words(900, 7))
    return {
        "'a* ' x 1666": ("a* " * 1666)[:MAX_TEXT],
        "'ab' x 2500 (one word)": "ab" * 2500,
        "'ab' x 2499 + 'x'": "ab" * 2499 + "x",
        "'ab ' x 1666": ("ab " * 1666)[:MAX_TEXT],
        "'ab'x20 words": (("ab" * 20 + " ") * 130)[:MAX_TEXT],
        "'ab*ab*' masks": (("ab*ab*ab " * 600)[:MAX_TEXT]),
        "distinct a*word masks": distinct_masks[:MAX_TEXT],
        "random a/b/space/*": "".join(rng.choice("ab *") for _ in range(MAX_TEXT)),
        "'halt die ' x 555": ("halt die " * 556)[:MAX_TEXT],
        "'A r s c h ' letters": ("A r s c h l o c h " * 280)[:MAX_TEXT],
    }


def load_matcher_class(path: str | None):
    """Return the `Matcher` of this checkout, or of another copy of wordlists.py."""
    if path is None:
        from moderation.services.wordlists import Matcher
        return Matcher
    spec = importlib.util.spec_from_file_location("other_wordlists", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.Matcher


def matching(matcher) -> Callable[[str], object]:
    """What a submission runs: `find_all`, or both `find` calls of a matcher without it."""
    if hasattr(matcher, "find_all"):
        return matcher.find_all
    return lambda text: (matcher.find(BANNED, text), matcher.find(SUSPECT, text))


class Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise Timeout


def timed(fn: Callable[[], object], timeout: float) -> float | None:
    """Seconds `fn` took, or None when it ran past `timeout` (the regex engine checks signals, so it stops)."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.perf_counter()
    try:
        fn()
    except Timeout:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return time.perf_counter() - start


def ordinary_comments(files: list[str], smoke: bool) -> tuple[str, list[str]]:
    if all(Path(f).exists() for f in files) and not smoke:
        return "GermEval sample", [t for t in sample_texts(read_datasets(files).texts) if t.strip()]
    return "built-in comments", BUILT_IN_COMMENTS


def main(argv: list[str] | None = None) -> int:
    """Time the matching of ordinary and worst-case comments and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="*", default=[str(p) for p in DEFAULT_FILES])
    parser.add_argument("--matcher", help="a wordlists.py whose Matcher to time instead of this checkout's")
    parser.add_argument("--against", help="a wordlists.py whose Matcher to time too on the ordinary comments, "
                        "comment by comment with this one")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds after which a case is stopped")
    parser.add_argument("--smoke", action="store_true", help="small sample, for the test suite")
    args = parser.parse_args(argv)
    matcher_class = load_matcher_class(args.matcher)
    sizes = [0, 30] if args.smoke else ORDINARY_SIZES
    source, comments = ordinary_comments(args.data, args.smoke)
    print(f"machine reference: sum(range(10**6)) takes {machine_reference_ms():.1f} ms; "
          f"matcher from {args.matcher or 'this checkout'}")

    print(f"\nordinary comments ({source}, {len(comments)}), per comment:")
    print(f"{'terms per list':>15s} {'matcher':>8s} {'compile':>10s} {'median':>10s} {'p99':>10s} {'max':>10s}")
    others = {"this": matcher_class, **({"against": load_matcher_class(args.against)} if args.against else {})}
    for size in sizes:
        lists = {BANNED: clean_terms(ordinary_list(size, 1), BANNED),
                 SUSPECT: clean_terms(ordinary_list(size, 2), SUSPECT)}
        compiled, matches = {}, {}
        for name, cls in others.items():
            start = time.perf_counter()
            matches[name] = matching(cls.build(lists))
            compiled[name] = time.perf_counter() - start
            for text in comments[:50]:  # warm caches (the normaliser's, the regex module's)
                matches[name](text)
        seconds: dict[str, list[float]] = {name: [] for name in others}
        for text in comments:  # comment by comment, so that both matchers see the machine alike
            for name, match in matches.items():
                seconds[name].append(timed(partial(match, text), args.timeout) or args.timeout)
        for name, taken in seconds.items():
            taken.sort()
            p99 = taken[min(len(taken) - 1, int(0.99 * len(taken)))]
            print(f"{size:>15,d} {name:>8s} {compiled[name] * 1e3:7.1f} ms {statistics.median(taken) * 1e6:7.1f} µs "
                  f"{p99 * 1e6:7.1f} µs {taken[-1] * 1e6:7.1f} µs")

    print("\nthe audit's cases (banned list only; 'ab' x 500 is 1,000 characters):")
    print(f"{'list':26s} {'comment':16s} {'matching':>12s}")
    nasty = PATHOLOGICAL[0]
    audit = [("1,000 terms", clean_terms(ordinary_list(1000, 1), BANNED), "'a* ' x 1666", ("a* " * 1666)[:MAX_TEXT]),
             *((f"the one term {nasty}", [nasty], f"'ab' x {n}", "ab" * n) for n in (500, 1000, 2500))]
    for list_name, terms, text_name, text in audit[:2] if args.smoke else audit:
        match = matching(matcher_class.build({BANNED: terms, SUSPECT: []}))
        took = timed(partial(match, text), args.timeout)
        shown = f"> {args.timeout:g} s" if took is None else f"{took * 1e3:9.1f} ms"
        print(f"{list_name:26s} {text_name:16s} {shown:>12s}")

    size = 500 if args.smoke else MAX_TERMS
    lists = {BANNED: clean_terms(pathological_list(size, 3), BANNED),
             SUSPECT: clean_terms(pathological_list(size, 4), SUSPECT)}
    start = time.perf_counter()
    match = matching(matcher_class.build(lists))
    compiled = time.perf_counter() - start
    texts = worst_texts()
    if args.smoke:
        texts = {name: text[:500] for name, text in list(texts.items())[:3]}
    print(f"\nworst cases: {size:,d} banned and {size:,d} suspect terms, {size // 10:,d} of each pathological "
          f"wildcard terms; compiled in {compiled * 1e3:.0f} ms")
    print(f"{'comment':26s} {'chars':>6s} {'matching':>12s}")
    total = 0.0
    for name, text in texts.items():
        runs = []
        for _ in range(1 if args.smoke else 3):
            runs.append(timed(partial(match, text), args.timeout))
            if runs[-1] is None:
                break
        if None in runs:
            print(f"{name:26s} {len(text):6,d} {'> ' + format(args.timeout, 'g') + ' s':>12s}")
            total += args.timeout
            continue
        total += min(runs)
        print(f"{name:26s} {len(text):6,d} {min(runs) * 1e3:9.1f} ms")
    print(f"{'all worst cases':26s} {'':6s} {total * 1e3:9.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
