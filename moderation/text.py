"""How the service cleans and checks the texts and ids it receives (shared by the API and the pages)."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from html.parser import HTMLParser
from typing import Any

# Removed from every text: control characters (Unicode category Cc) except line break and tab, lone
# surrogates (Cs), and the bidirectional overrides and isolates that let a comment display as
# something other than it says (U+202A-U+202E, U+2066-U+2069).
_REMOVED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
# Ids are 32-bit integers in every database we support; larger values can name nothing.
MAX_ID = 2**31 - 1
# "." and ".." are refused: as path segments they mean "this folder" and "the one above", and clients, proxies
# and caches resolve them before the id ever arrives (the same id would name different URLs).
ARTICLE_ID = re.compile(r"^(?!\.\.?$)[A-Za-z0-9._:~-]{1,200}$")
# Deeper than any request this service reads (Perspective's is 5 levels); also far below the recursion limit.
MAX_JSON_DEPTH = 32


def clean_text(raw: str) -> str:
    """Return text as stored: NFC, line breaks unified, control characters and lone surrogates removed, trimmed."""
    text = _REMOVED.sub("", raw.replace("\r\n", "\n").replace("\r", "\n"))
    return unicodedata.normalize("NFC", text).strip()


class _TextExtractor(HTMLParser):
    """Collect an HTML fragment's text; block elements and <br> become line breaks."""

    BREAKS = {"br", "p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "tr"}

    HIDDEN = {"script", "style"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")
        self.hidden += tag in self.HIDDEN

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")
        if tag in self.HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Return the readable text of an HTML comment body (Coral sends HTML), cleaned like any text."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    return clean_text(re.sub(r"\n\s*\n+", "\n", text))


def text_fingerprint(text: str) -> str:
    """Return the SHA-256 of a text with case, compatibility forms and all whitespace folded away.

    The same comment comes back from an integration as HTML or plain text, with other line breaks:
    its fingerprint stays the same, so erasure finds every copy of an author's texts.
    """
    folded = unicodedata.normalize("NFKC", clean_text(text)).casefold()
    return hashlib.sha256("".join(folded.split()).encode("utf-8", "surrogatepass")).hexdigest()


def unstorable_reason(value: str) -> str | None:
    """Say why a string cannot be stored as sent (NUL, lone surrogate), or return None when it can."""
    # PostgreSQL refuses NUL in text; no driver can encode a lone surrogate (valid in JSON as "\ud800") as UTF-8.
    if "\x00" in value:
        return "Must not contain NUL characters (U+0000)."
    if value.isascii():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"Must be valid Unicode: contains a lone surrogate (U+{ord(value[exc.start]):04X})."
    return None


class JSONLimitError(json.JSONDecodeError):
    """A JSON document that is well formed but beyond what this service reads (nested too deeply)."""


def _int_or_infinity(digits: str) -> int | float:
    # Python refuses to convert integers of more than 4300 digits (ValueError). Such a number reads as
    # infinity, as a float literal too large for a double already does, so every numeric field refuses it
    # by name ("Number too large.", "Not a valid integer.") instead of the parser failing as a whole.
    try:
        return int(digits)
    except ValueError:
        return float("-inf") if digits.startswith("-") else float("inf")


def _depth(value: Any) -> int:
    """Return how deeply containers nest in a parsed JSON value (iteratively: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


# Built once: json.loads with any option builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_int=_int_or_infinity)


def load_json(document: str | bytes) -> Any:
    """Parse JSON from a client; refuse nesting deeper than MAX_JSON_DEPTH with a JSONLimitError.

    Raises json.JSONDecodeError (a ValueError) for anything it will not read, never RecursionError.
    """
    if isinstance(document, bytes | bytearray):  # as json.loads reads bytes: UTF-8, -16 or -32
        document = document.decode(json.detect_encoding(document), "surrogatepass")
    try:
        value = _DECODER.decode(document)
    except RecursionError:
        value = None
    else:
        if _depth(value) <= MAX_JSON_DEPTH:
            return value
    raise JSONLimitError(f"nested deeper than {MAX_JSON_DEPTH} levels", document, 0)
