"""How the service cleans and checks the texts and ids it receives (shared by the API and the pages)."""

from __future__ import annotations

import re
import unicodedata

# Bidirectional overrides and isolates let a comment display as something other than it says.
_BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
_KEEP = {"\n", "\t"}
ARTICLE_ID = re.compile(r"^[A-Za-z0-9._:~-]{1,200}$")


def clean_text(raw: str) -> str:
    """Return text as stored: NFC, line breaks unified, control characters and lone surrogates removed, trimmed."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(
        ch for ch in text
        if ch in _KEEP or (unicodedata.category(ch) not in {"Cc", "Cs"} and ch not in _BIDI_CONTROLS)
    )
    return unicodedata.normalize("NFC", text).strip()
