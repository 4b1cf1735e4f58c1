"""Match a comment against compiled word lists in time linear in the comment's length.

A term's parts between `*` are normalised like the text (`moderation.ml.normalize`); `*` stands for any
run of letters and digits inside a word; the term must stand as whole words: the regular expression
`(?<![a-z0-9äöüß])drecks[a-z0-9äöüß]*(?![a-z0-9äöüß])` for "Drecks*". A regular expression per term, as
matching once was, tried every term at every position and backtracked over each wildcard, and the masked
words of a comment were compared with every term, normalised again each time: a few thousand characters
took minutes. Here each term is normalised once per version of the lists and sorted into one of three
structures:

- plain one-word terms: one set look-up per word of the comment;
- plain terms of several words (or with punctuation): at each word that starts one, one look-up per
  distinct length of the terms it starts;
- terms with `*`: one bit-parallel automaton (shift-and) for all of them, a few operations per character
  on an integer of a bit per character of those terms, however they are written; run once per distinct
  word of the comment for terms inside one word (nearly all), over the whole comment for the others.

A masked word in the comment ("a*loch" after normalising "A****loch") matches a term of at least
`MIN_MASKED_TERM` letters that its visible letters fit; the terms are found by binary search on the visible
start or end, and at most `MAX_MASKED_WORDS` distinct masked words are looked at.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate

from moderation.ml import normalize

WORD = "a-z0-9äöüß"  # what `*` may stand for, and what must not touch a term's ends
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789äöüß")
_WORDS_RE = re.compile(f"[{WORD}]+")
_TOKENS_RE = re.compile(f"[{WORD}]+|[^{WORD}]")  # words, and every other character on its own
_MASKED_RE = re.compile(f"[{WORD}*]+")  # a word with `*` in it is masked ("a*loch")
_IN_WORD_RE = re.compile(f"[{WORD}*]+")  # a `*` term inside one word ("Drecks*", "*ab*ab*ab*x")

MAX_WILDCARDS = 4  # runs of `*` in one term; `clean_terms` refuses more
MAX_MASKED_WORDS = 32
MIN_MASKED_TERM = 4
_LAST = chr(0x10FFFF)


def term_pattern(term: str) -> str:
    """Return a term as it is matched: each part between `*` normalised, a run of `*` as one `*`."""
    return re.sub(r"\*+", "*", "*".join(normalize(part) for part in term.split("*")))


class _Automaton:
    """Terms with `*`, matched together by shift-and: one bit per state of each term, in one integer.

    A term of n characters has states 0..n (n characters read); a `*` after character j is a loop on
    state j over word characters. A term starts where no word character precedes and is found where
    none follows, as `(?<!word)` and `(?!word)` in the term's regular expression.
    """

    def __init__(self, patterns: dict[str, list[int]]) -> None:
        chars: dict[str, list[int]] = {}
        start = loops = accept = 0
        self.ends: dict[int, list[int]] = {}  # accept bit -> indices of the terms
        bit = 0
        for pattern, ids in patterns.items():
            start |= 1 << bit
            for char in pattern:
                if char == "*":
                    loops |= 1 << bit
                else:
                    bit += 1
                    chars.setdefault(char, []).append(bit)
            accept |= 1 << bit
            self.ends[bit] = ids
            bit += 1
        self.start, self.loops, self.accept = start, loops, accept
        self.masks = {char: _bits(positions, bit) for char, positions in chars.items()}

    def _terms(self, found: int) -> list[int]:
        return [index for bit in _set_bits(found) for index in self.ends[bit]]

    def run_words(self, words: set[str]) -> list[int]:
        """Return the terms found in the distinct `words` (for terms inside one word: each word once)."""
        masks, loops, start = self.masks, self.loops, self.start
        alive, found = self.accept, 0
        for word in words:
            state = start
            for char in word:
                state = ((state << 1) & masks.get(char, 0)) | (state & loops)
                if not state:
                    break
            if hits := state & alive:
                found |= hits
                alive ^= hits
                if not alive:
                    break
        return self._terms(found)

    def run_text(self, text: str) -> list[int]:
        """Return the terms found in the normalised `text` (for terms across words or with punctuation)."""
        masks, loops, start = self.masks, self.loops, self.start
        alive, found = self.accept, 0
        state, in_word = 0, False
        for char in text:
            if char in _WORD_CHARS:
                if not in_word:
                    state |= start
                    in_word = True
                elif not state:
                    continue  # nothing can start before the next word
                state = ((state << 1) & masks.get(char, 0)) | (state & loops)
            else:
                if state and (hits := state & alive):  # a match ends where the word does
                    found |= hits
                    alive ^= hits
                    if not alive:
                        break
                if not in_word:
                    state |= start
                state = (state << 1) & masks.get(char, 0)
                in_word = False
        return self._terms(found | (state & alive))


def _bits(positions: list[int], size: int) -> int:
    """Return an integer with the given bits set (built from bytes: one shift per bit is quadratic)."""
    buffer = bytearray(size // 8 + 1)
    for position in positions:
        buffer[position >> 3] |= 1 << (position & 7)
    return int.from_bytes(buffer, "little")


def _set_bits(number: int) -> list[int]:
    bits = []
    while number:
        low = number & -number
        bits.append(low.bit_length() - 1)
        number ^= low
    return bits


@dataclass
class _Text:
    """A comment, normalised once and cut into words and tokens only when a list needs them."""

    folded: str

    @cached_property
    def words(self) -> set[str]:
        return set(_WORDS_RE.findall(self.folded))

    @cached_property
    def tokens(self) -> tuple[list[str], list[int]]:
        tokens = _TOKENS_RE.findall(self.folded)
        return tokens, [0, *accumulate(map(len, tokens))]

    @cached_property
    def masked(self) -> list[list[str]]:
        """The distinct masked words, at most `MAX_MASKED_WORDS`, split at their `*`."""
        if "*" not in self.folded:
            return []
        seen: dict[str, None] = {}
        for run in _MASKED_RE.findall(self.folded):
            if "*" in run and run not in seen:
                seen[run] = None
                if len(seen) == MAX_MASKED_WORDS:
                    break
        return [run.split("*") for run in seen]


def _fits(plain: str, parts: list[str]) -> bool:
    """Whether the visible `parts` of a masked word, in order, with anything between, make up `plain`."""
    head, *middle, tail = parts
    end = len(plain) - len(tail)
    if end < len(head) or not plain.startswith(head) or not plain.endswith(tail):
        return False
    position = len(head)
    for part in middle:  # the leftmost fit of each part leaves the most room for the rest
        position = plain.find(part, position, end)
        if position < 0:
            return False
        position += len(part)
    return True


@dataclass
class _List:
    """One compiled list: the structures above, each mapping back to the indices of the terms."""

    terms: tuple[str, ...]
    words: dict[str, list[int]] = field(default_factory=dict)
    phrases: dict[str, list[int]] = field(default_factory=dict)
    phrase_sizes: dict[str, list[int]] = field(default_factory=dict)  # first token -> token counts
    symbol_starts: list[str] = field(default_factory=list)  # first tokens that are not words ("-", "+")
    in_words: _Automaton | None = None  # `*` terms of one word: run once per distinct word
    across_words: _Automaton | None = None  # the other `*` terms ("Lügen* Presse"): run over the text
    plain: list[str] = field(default_factory=list)  # for masked words: sorted, then reversed and sorted
    plain_ids: list[int] = field(default_factory=list)
    backwards: list[str] = field(default_factory=list)
    backwards_ids: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, terms: tuple[str, ...]) -> _List:
        compiled = cls(terms)
        globs: dict[str, list[int]] = {}
        plain: list[tuple[str, int]] = []
        for index, term in enumerate(terms):
            pattern = term_pattern(term)
            if not pattern.replace("*", ""):
                continue  # nothing to match (`clean_terms` refuses such a term)
            if "*" in pattern:
                globs.setdefault(pattern, []).append(index)
            elif _WORDS_RE.fullmatch(pattern):
                compiled.words.setdefault(pattern, []).append(index)
            else:
                if pattern not in compiled.phrases:
                    tokens = _TOKENS_RE.findall(pattern)
                    sizes = compiled.phrase_sizes.setdefault(tokens[0], [])
                    if len(tokens) not in sizes:
                        sizes.append(len(tokens))
                compiled.phrases.setdefault(pattern, []).append(index)
            stripped = normalize(term.replace("*", ""))
            if len(stripped) >= MIN_MASKED_TERM:
                plain.append((stripped, index))
        for sizes in compiled.phrase_sizes.values():
            sizes.sort()
        compiled.symbol_starts = [token for token in compiled.phrase_sizes if token[0] not in _WORD_CHARS]
        in_words = {pattern: ids for pattern, ids in globs.items() if _IN_WORD_RE.fullmatch(pattern)}
        across_words = {pattern: ids for pattern, ids in globs.items() if pattern not in in_words}
        compiled.in_words = _Automaton(in_words) if in_words else None
        compiled.across_words = _Automaton(across_words) if across_words else None
        plain.sort()
        compiled.plain = [p for p, _ in plain]
        compiled.plain_ids = [i for _, i in plain]
        backwards = sorted((p[::-1], i) for p, i in plain)
        compiled.backwards = [p for p, _ in backwards]
        compiled.backwards_ids = [i for _, i in backwards]
        return compiled

    def find(self, text: _Text) -> list[str]:
        """Return the terms `text` contains: direct matches in list order, then those masked words fit."""
        found: set[int] = set()
        if self.words:
            for word in text.words & self.words.keys():
                found.update(self.words[word])
        if self.phrases:
            found.update(self._phrases(text))
        if self.in_words is not None:
            found.update(self.in_words.run_words(text.words))
        if self.across_words is not None:
            found.update(self.across_words.run_text(text.folded))
        ordered = sorted(found)
        for parts in text.masked:
            fitting = sorted(set(self._masked(parts, found)))
            found.update(fitting)
            ordered.extend(fitting)
        return [self.terms[index] for index in ordered]

    def _phrases(self, text: _Text) -> list[int]:
        # The tokens that start a phrase, if the text has any: most comments have none, and cutting the
        # text into tokens costs more than a set intersection.
        starts = text.words & self.phrase_sizes.keys()
        starts.update(token for token in self.symbol_starts if token in text.folded)
        if not starts:
            return []
        tokens, offsets = text.tokens
        folded, count, found = text.folded, len(tokens), []
        for position, token in enumerate(tokens):
            if token not in starts:
                continue
            for size in self.phrase_sizes[token]:
                end = position + size
                if end > count:
                    break
                ids = self.phrases.get(folded[offsets[position]:offsets[end]])
                # Whole words: the tokens around must not be words (they are when the phrase ends in punctuation).
                if ids and (position == 0 or tokens[position - 1][-1] not in _WORD_CHARS) and (
                        end == count or tokens[end][0] not in _WORD_CHARS):
                    found.extend(ids)
        return found

    def _masked(self, parts: list[str], found: set[int]) -> list[int]:
        """Return the terms not yet `found` that a masked word fits, found by its visible first or last letters."""
        head, *middle, tail = parts
        ranges = []
        if head:
            ranges.append((self.plain, self.plain_ids, tail, *_prefix_range(self.plain, head)))
        if tail:
            ranges.append((self.backwards, self.backwards_ids, head[::-1],
                           *_prefix_range(self.backwards, tail[::-1])))
        if not ranges:
            return []  # "*" alone (a footnote, a list bullet) or "*rsch*": no term can be told apart
        strings, ids, other_end, low, high = min(ranges, key=lambda r: r[4] - r[3])
        if not middle:  # "a*loch": the other end and the length are all there is to check
            least = len(head) + len(tail)
            return [ids[i] for i in range(low, high)
                    if ids[i] not in found and len(strings[i]) >= least and strings[i].endswith(other_end)]
        reverse = strings is self.backwards
        return [ids[i] for i in range(low, high)
                if ids[i] not in found and _fits(strings[i][::-1] if reverse else strings[i], parts)]


def _prefix_range(strings: list[str], prefix: str) -> tuple[int, int]:
    return bisect_left(strings, prefix), bisect_left(strings, prefix + _LAST)


@dataclass(frozen=True)
class Matcher:
    """Compiled word lists; `find_all` returns the terms of each kind a text contains."""

    lists: dict[str, _List]

    @classmethod
    def build(cls, terms: dict[str, list[str]]) -> Matcher:
        """Compile the lists of each kind (normalising every term once)."""
        return cls({kind: _List.build(tuple(values)) for kind, values in terms.items() if values})

    def find_all(self, text: str) -> dict[str, list[str]]:
        """Return, per kind, the terms found in `text`, evasions included (text normalised once)."""
        if not self.lists:
            return {}
        prepared = _Text(normalize(text))
        return {kind: found for kind, compiled in self.lists.items() if (found := compiled.find(prepared))}

    def find(self, kind: str, text: str) -> list[str]:
        """Return the terms of `kind` found in `text`, evasions included."""
        compiled = self.lists.get(kind)
        return compiled.find(_Text(normalize(text))) if compiled is not None else []
