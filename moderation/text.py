"""How the service cleans and checks the texts and ids it receives (shared by the API and the pages)."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

# Bidirectional overrides and isolates let a comment display as something other than it says.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_KEEP = {"\n", "\t"}
# Ids are 32-bit integers in every database we support; larger values can name nothing.
MAX_ID = 2**31 - 1
ARTICLE_ID = re.compile(r"^[A-Za-z0-9._:~-]{1,200}$")


def clean_text(raw: str) -> str:
    """Return text as stored: NFC, line breaks unified, control characters and lone surrogates removed, trimmed."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(
        ch for ch in text
        if ch in _KEEP or (unicodedata.category(ch) not in {"Cc", "Cs"} and ch not in _BIDI_CONTROLS)
    )
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
