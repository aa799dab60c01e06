"""Small text helpers shared by the library and the CLI: byte counts, and text any terminal can show."""

from __future__ import annotations

import codecs

# What to print instead of a symbol the terminal's encoding cannot show (C or Latin-1 locales).
ASCII_FALLBACKS = {"✓": "ok", "×": "x", "→": "->", "…": "...", "—": "-", "–": "-", "━": "-", "•": "*"}


def human_bytes(n: float) -> str:
    """`1536` → `1.5 KiB`: binary units, as the summary and the progress bar both print them."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def printable(text: str, encoding: str | None) -> str:
    """`text` with every character that `encoding` cannot encode replaced: known symbols by their
    ASCII form, anything else (a surrogate-escaped file name included) by `?`."""
    try:
        enc = codecs.lookup(encoding or "utf-8").name
    except LookupError:
        enc = "ascii"
    try:
        text.encode(enc)
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        try:
            ch.encode(enc)
            out.append(ch)
        except UnicodeEncodeError:
            out.append(ASCII_FALLBACKS.get(ch, "?"))
    return "".join(out)


def readable(text: str) -> str:
    """`text` with what UTF-8 cannot hold (surrogate-escaped bytes of a file name or an argument in
    a C locale, lone surrogates) replaced by U+FFFD, for messages and files that must be UTF-8."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
