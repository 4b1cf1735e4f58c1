"""How the service cleans and checks the texts and ids it receives (shared by the API and the pages)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from html.parser import HTMLParser

# Removed from every text: control characters (Unicode category Cc) except line break and tab, lone
# surrogates (Cs), and the bidirectional overrides and isolates that let a comment display as
# something other than it says (U+202A-U+202E, U+2066-U+2069).
_REMOVED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
# Ids are 32-bit integers in every database we support; larger values can name nothing.
MAX_ID = 2**31 - 1
ARTICLE_ID = re.compile(r"^[A-Za-z0-9._:~-]{1,200}$")


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
