"""German-aware, evasion-resistant text normalisation with optional offset tracking.

`normalize(text)` is what the classifier's features see. `normalize_with_offsets(text)`
returns the same string plus, for every normalised character, the span of the original
text it came from, so that highlights computed on normalised text point into the
original comment.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import lru_cache

URL_TOKEN = "xurl"
USER_TOKEN = "xuser"
EMOJI_TOKEN = "xemoji"

# Emoji that carry a clear signal get their own word; every other pictograph becomes EMOJI_TOKEN.
_EMOJI_WORDS = {
    "😂": "xlachen", "🤣": "xlachen", "😆": "xlachen", "😅": "xlachen", "😁": "xgrinsen",
    "😀": "xgrinsen", "😃": "xgrinsen", "😄": "xgrinsen", "😊": "xlaecheln", "🙂": "xlaecheln",
    "☺": "xlaecheln", "😉": "xzwinkern", "😘": "xkuss", "❤": "xherz", "😍": "xherz",
    "👍": "xdaumenhoch", "👎": "xdaumenrunter", "👏": "xklatschen", "🙏": "xbitte",
    "😡": "xwut", "😠": "xwut", "🤬": "xfluchen", "🖕": "xmittelfinger", "💩": "xkacke",
    "🤮": "xkotzen", "🤢": "xkotzen", "🤡": "xclown", "🐷": "xschwein", "🐖": "xschwein",
    "🙄": "xaugenrollen", "🤦": "xfacepalm", "😱": "xschock", "😳": "xschock", "🤔": "xdenken",
    "😢": "xtraurig", "😭": "xtraurig", "🤯": "xschock", "🔥": "xfeuer", "💪": "xstark",
    "🤪": "xverrueckt", "🥴": "xverrueckt", "🐒": "xaffe", "🐵": "xaffe", "🦍": "xaffe",
    "🐀": "xratte", "🐍": "xschlange", "🤥": "xluege", "💀": "xtot", "🔫": "xwaffe",
    "🪓": "xwaffe", "🔪": "xwaffe", "☠": "xtot", "🖤": "xherz", "💙": "xherz", "💚": "xherz",
}
EMOJI_RE = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff]"
)
# Invisible joiners, variation selectors and skin tones only decorate the emoji before them.
_INVISIBLE_RE = re.compile("[\u200b-\u200d\u2060\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]+")

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                       "@": "a", "$": "s"})
_GERMAN_FOLD = {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ẞ": "ss"}


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    """Fold one non-ASCII character: German letters to ae/oe/ue/ss, accents stripped."""
    if char in _GERMAN_FOLD:
        return _GERMAN_FOLD[char]
    decomposed = unicodedata.normalize("NFKD", char)
    if decomposed[:1] in "aou" and "\u0308" in decomposed:
        return decomposed[0] + "e"
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    if not stripped:
        return char if not unicodedata.combining(char) else ""
    return stripped.lower()


def _fold_match(match: re.Match) -> str:
    return _fold_char(match.group())


def _emoji_match(match: re.Match) -> str:
    return " " + _EMOJI_WORDS.get(match.group(), EMOJI_TOKEN) + " "


_COMPOSED_UMLAUT = {"a": "ä", "o": "ö", "u": "ü"}


def _umlaut_match(match: re.Match) -> str:
    return _COMPOSED_UMLAUT[match.group(1)]


def _join_letters(match: re.Match) -> str:
    return match.group()[::2]


def _leet_match(match: re.Match) -> str:
    word = match.group()
    # Only words that already contain letters and whose digits are all leet digits:
    # "1d10t" -> "idiot", while "2018", "g20" and "co2" stay as they are.
    if not any(c.isalpha() for c in word) or any(c.isdigit() and c not in "013457" for c in word):
        return word
    return word.translate(_LEET)


def _repeat_match(match: re.Match) -> str:
    text = match.group()
    if text[0].isdigit():
        return text
    return text[0] if text[0].isalpha() else text[:3]


def _has(sub: str) -> Callable[[str], bool]:
    return lambda text: sub in text


def _not_ascii(text: str) -> bool:
    return not text.isascii()


def _has_url(text: str) -> bool:
    return "://" in text or "www." in text.lower()


_LEET_TRIGGER = re.compile(r"[013457@$]")

# Applied in order: (guard, regex, replacement). A guard is a cheap test that is false only
# when the regex cannot match, so skipping the step never changes the result.
# Lowercasing runs between _PRE_STEPS and _POST_STEPS.
_Step = tuple["Callable[[str], object] | None", re.Pattern, "str | Callable[[re.Match], str]"]
_PRE_STEPS: list[_Step] = [
    (_has("|LBR|"), re.compile(r"\|LBR\|"), " "),
    (_has_url, re.compile(r"(?i)\b(?:https?://|www\.)\S+"), f" {URL_TOKEN} "),
    (_has("@"), re.compile(r"(?<![\w@])@\w+"), f" {USER_TOKEN} "),
    (_not_ascii, _INVISIBLE_RE, ""),
    (_not_ascii, EMOJI_RE, _emoji_match),
]
_POST_STEPS: list[_Step] = [
    # A decomposed umlaut becomes one letter, so that the joining below sees it as one.
    (_not_ascii, re.compile("([aou])\u0308"), _umlaut_match),
    # Single letters split by one repeated separator: "i d i o t", "i.d.i.o.t", "l-ü-g-e".
    # This runs before folding, which would turn "ü" into two letters and end the run.
    (None, re.compile(r"(?<![\w@$])[\w@$](?:([ .\-_+])[\w@$])(?:\1[\w@$]){1,}(?![\w@$])"),
     _join_letters),
    (_not_ascii, re.compile(r"[^\x00-\x7f]"), _fold_match),
]
# A fitted `Unmasker` runs here, between folding and the steps below (which squeeze "***" to "*").
_LATE_STEPS: list[_Step] = [
    # The second branch starts only at the beginning of a run (linear on long runs of asterisks).
    (_has("*"), re.compile(r"(?<=\w)\*+|(?<!\*)\*+(?=\w)"), "*"),
    (_LEET_TRIGGER.search,
     re.compile(r"(?<![\w@$])(?=[\w@$]*[^\W\d_])(?=[\w@$]*[013457@$])[\w@$]+"), _leet_match),
    (None, re.compile(r"(\S)\1{2,}"), _repeat_match),
    (_has("#"), re.compile(r"(?<!\w)#(?=\w)"), ""),
    # Whitespace: every kind becomes a space (one for one, so offsets need no update), then
    # runs of spaces become one. Same result as replacing `\s{2,}|[^\S ]` with a space.
    (None, re.compile(r"[^\S ]"), " "),
    (_has("  "), re.compile(r" {2,}"), " "),
]
_PLAIN_POST_STEPS = _POST_STEPS + _LATE_STEPS


def _lower(text: str) -> str:
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    # A few characters lowercase to two ("İ"); keep one character per input character.
    return "".join(c.lower()[:1] for c in text)


def _post_steps(unmask: Unmasker | None) -> list[_Step]:
    return _PLAIN_POST_STEPS if unmask is None else unmask.steps


def normalize(text: str, unmask: Unmasker | None = None) -> str:
    """Return the normalised form of `text` that the classifier's features are built on.

    With `unmask` (learned by the pipeline's normaliser from its training texts), masked words
    such as "A****loch" are restored to the training word they stand for, right after umlauts are
    folded and before runs of asterisks are squeezed.
    """
    for guard, pattern, repl in _PRE_STEPS:
        if guard is None or guard(text):
            text = pattern.sub(repl, text)
    text = _lower(text)
    for guard, pattern, repl in _post_steps(unmask):
        if guard is None or guard(text):
            text = pattern.sub(repl, text)
    return text.strip()


# A masked word after lowercasing and folding: letters, a run of asterisks, maybe more letters.
MASK_RE = re.compile(r"(?<![\w*@$])([a-z]+)(\*+)([a-z]*)(?![\w*@$])")
_VOCAB_WORD_RE = re.compile(r"(?<![\w*@$])[a-z]{3,}(?![\w*@$])")
_FOLDED_PAIR_RE = re.compile("ae|oe|ue|ss")  # what folding made of ä, ö, ü and ß


class Unmasker:
    """Restore masked words ("a****loch", "fr***e", "schei**e") to a word of the training texts.

    People mask the words they think offensive, so a mask is restored only to a candidate: a word
    seen in at least `MIN_COUNT` offensive training rows and at least `MIN_RATIO` times as often
    (add-one smoothed) in offensive rows as in the others. A candidate fits a mask if it keeps the
    visible letters at both ends and hides as many letters as there are asterisks, counted as
    written (a hidden "ß" or "ü" is two letters after folding). One asterisk between letters may
    hide one to `MAX_HIDDEN` letters ("a*loch"); a mask at the end of a word needs two or more
    ("ar***"), since a single trailing asterisk is usually a footnote or a gender star ("du*",
    "kinder*"). At least two letters must be visible. Of several fits the one seen in the most
    offensive rows wins. A mask nothing fits stays as written ("lehrer*innen", "b***").

    Only the candidates and their counts are kept (and pickled), so a stored model restores masks
    the same way whatever these class settings become later.
    """

    MIN_COUNT = 3
    MIN_RATIO = 2.0
    MAX_HIDDEN = 6
    CACHE_SIZE = 4096

    def __init__(self, candidates: dict[str, tuple[int, int]]):
        self.candidates = candidates  # word -> (offensive rows, other rows) holding it
        by_key: dict[tuple[int, str], list[str]] = {}
        for word in sorted(candidates, key=lambda w: (-candidates[w][0], candidates[w][1], w)):
            by_key.setdefault((len(word), word[0]), []).append(word)
        self._by_key = by_key  # (length, first letter) -> words, best first
        self._longest = max(map(len, candidates), default=0)
        self._cache: dict[tuple[str, int, str], str | None] = {}
        self.steps: list[_Step] = [*_POST_STEPS, (_has("*"), MASK_RE, self.restore), *_LATE_STEPS]

    @classmethod
    def learn(cls, normalized_texts: list[str], labels) -> Unmasker:
        """Return the unmasker of already normalised training texts and their 0/1 labels."""
        offensive: dict[str, int] = {}
        other: dict[str, int] = {}
        for text, label in zip(normalized_texts, labels, strict=True):
            counts = offensive if int(label) == 1 else other
            for word in set(_VOCAB_WORD_RE.findall(text)):
                counts[word] = counts.get(word, 0) + 1
        return cls({word: (count, other.get(word, 0)) for word, count in offensive.items()
                    if count >= cls.MIN_COUNT and (count + 1) / (other.get(word, 0) + 1) >= cls.MIN_RATIO})

    def __getstate__(self) -> dict:
        return {"candidates": self.candidates}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["candidates"])

    def word_for(self, prefix: str, stars: int, suffix: str) -> str | None:
        """Return the word a mask stands for, or None."""
        visible = len(prefix) + len(suffix)
        if visible < 2 or visible + stars > self._longest or (not suffix and stars < 2):
            return None
        key = (prefix, stars, suffix)
        word = self._cache.get(key, key)
        if word is key:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            word = self._cache[key] = self._resolve(prefix, stars, suffix)
        return word

    def _resolve(self, prefix: str, stars: int, suffix: str) -> str | None:
        visible = len(prefix) + len(suffix)
        flexible = stars == 1  # word_for lets a single asterisk through only between letters
        hidden_lengths = range(1, self.MAX_HIDDEN + 1) if flexible else range(stars, 2 * stars + 1)
        fits = []
        for hidden in hidden_lengths:
            for word in self._by_key.get((visible + hidden, prefix[0]), ()):
                if not (word.startswith(prefix) and word.endswith(suffix)):
                    continue
                middle = word[len(prefix):len(word) - len(suffix)]
                if flexible or len(middle) - len(_FOLDED_PAIR_RE.findall(middle)) <= stars:
                    offensive, other = self.candidates[word]
                    fits.append((-offensive, other, word))
                    break  # the lists are sorted: the first fit of a length is its best
        return min(fits)[2] if fits else None

    def restore(self, match: re.Match) -> str:
        """Return the replacement of a `MASK_RE` match: the restored word, or the mask as it was."""
        word = self.word_for(match.group(1), len(match.group(2)), match.group(3))
        return word if word is not None else match.group()


def _sub_tracked(pattern: re.Pattern, repl, text: str, starts: list[int], ends: list[int]):
    """Apply one substitution while carrying each character's original span along."""
    changed: list[tuple[int, int, int]] = []  # (begin, end, new length) of resized matches

    def replace(match: re.Match) -> str:
        # Replacement strings are literals (templates would need match.expand, which is slow).
        replacement = repl(match) if callable(repl) else repl
        begin, end = match.span()
        if len(replacement) != end - begin:
            changed.append((begin, end, len(replacement)))
        return replacement

    new_text = pattern.sub(replace, text)
    if not changed:  # characters kept their positions: the spans stay as they are
        return new_text, starts, ends
    new_starts: list[int] = []
    new_ends: list[int] = []
    pos = 0
    for begin, end, length in changed:
        new_starts += starts[pos:begin]
        new_ends += ends[pos:begin]
        if end > begin:
            new_starts += [starts[begin]] * length
            new_ends += [ends[end - 1]] * length
        else:
            anchor = starts[begin] if begin < len(starts) else (ends[-1] if ends else 0)
            new_starts += [anchor] * length
            new_ends += [anchor] * length
        pos = end
    new_starts += starts[pos:]
    new_ends += ends[pos:]
    return new_text, new_starts, new_ends


def normalize_with_offsets(text: str, unmask: Unmasker | None = None) -> tuple[str, list[int], list[int]]:
    """Return `normalize(text, unmask)` and, per normalised character, its original start and end."""
    starts = list(range(len(text)))
    ends = list(range(1, len(text) + 1))
    for guard, pattern, repl in _PRE_STEPS:
        if guard is None or guard(text):
            text, starts, ends = _sub_tracked(pattern, repl, text, starts, ends)
    lowered = _lower(text)
    for guard, pattern, repl in _post_steps(unmask):
        if guard is None or guard(lowered):
            lowered, starts, ends = _sub_tracked(pattern, repl, lowered, starts, ends)
    stripped = lowered.strip()
    left = len(lowered) - len(lowered.lstrip())
    return stripped, starts[left:left + len(stripped)], ends[left:left + len(stripped)]


def original_span(starts: list[int], ends: list[int], begin: int, end: int) -> tuple[int, int]:
    """Map the normalised span [begin, end) back to a span of the original text."""
    return min(starts[begin:end]), max(ends[begin:end])
