r"""File and class names as people read them: escaped text that still says which raw name it was.

Names are kept as the file system gives them, bytes that are not valid UTF-8 included: a class is
its folder's raw name. :func:`display_name` turns any name into escaped, valid UTF-8 text for
messages, JSON and reports; :func:`parse_display_name` is its inverse; :func:`quoted` quotes a
path for a one-line message.

Example:
    >>> print(display_name("caf\udce9\n.jpg"))
    caf\xe9\n.jpg
    >>> parse_display_name(display_name("caf\udce9\n.jpg")) == "caf\udce9\n.jpg"
    True
"""

from __future__ import annotations

import os
import re

__all__ = ["display_name", "parse_display_name", "quoted"]

_SHORT_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SHORT_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
_ESCAPE_RE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[\\nrt])")


def _escape_char(ch: str) -> str:
    short = _SHORT_ESCAPES.get(ch)
    if short:
        return short
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not valid in the file-system encoding
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x80:  # other ASCII controls; \x80..\xff stay reserved for raw bytes
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def display_name(name: str) -> str:
    r"""A file name or path as printable text that still says exactly which name it was.

    Paths on disk and class identity always use the raw name; this is only for what
    people read and for files that must be valid UTF-8 (JSON, HTML, messages). Bytes
    that are not valid in the file-system encoding (Python holds them as lone
    surrogates) become ``\xff``; characters that :meth:`str.isprintable` rejects
    (controls, bidi overrides, zero-width and unassigned characters, other lone
    surrogates) become ``\n``, ``\t``, ``\r``, ``\x07``, ``\u202e`` or ``\U000e0001``;
    a backslash becomes ``\\``. ``\xNN`` above ``\x7f`` always means a raw byte, so
    the mapping is one-to-one: two names never display alike, and
    :func:`parse_display_name` gives the raw name back.

    Args:
        name: A name or path as Python holds it (``os.fsdecode`` of the bytes).

    Returns:
        The same text where nothing needed escaping.

    Example:
        >>> print(display_name(os.fsdecode(b"caf\xe9\n.jpg")))
        caf\xe9\n.jpg
        >>> print(display_name("日本 <b>\\x.png"))
        日本 <b>\\x.png
    """
    if name.isprintable() and "\\" not in name:
        return name
    return "".join(ch if ch.isprintable() and ch != "\\" else _escape_char(ch) for ch in name)


def _unescape(match: re.Match) -> str:
    text = match.group(0)
    kind = text[1]
    if kind in _SHORT_UNESCAPES:
        return _SHORT_UNESCAPES[kind]
    code = int(text[2:], 16)
    return chr(0xDC00 + code) if kind == "x" and code >= 0x80 else chr(code)


def parse_display_name(text: str) -> str:
    r"""The raw name behind a :func:`display_name`: ``parse_display_name(display_name(s)) == s``.

    A backslash that starts no escape is kept as it is, so text that was never escaped
    (an old report, a hand-written path) mostly comes back unchanged.

    Example:
        >>> parse_display_name(r"caf\xe9\n.jpg") == os.fsdecode(b"caf\xe9\n.jpg")
        True
    """
    return _ESCAPE_RE.sub(_unescape, text) if "\\" in text else text


def quoted(path: str | os.PathLike) -> str:
    r"""A path quoted for a one-line message that any terminal can print (:func:`display_name`).

    Example:
        >>> print(quoted(os.fsencode("data/caf\udce9")))
        'data/caf\xe9'
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return "'" + display_name(text) + "'"
