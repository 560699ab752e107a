"""Text from a user's files on its way to a terminal or a page: control characters removed or made visible.

A report, a file name or a CSV cell may hold escape sequences (clear the screen, retitle the window, hide what
follows), NUL bytes, or bidirectional overrides that make a line read differently from what it holds. None of these
belongs in a report or a message, so they are removed from text kept as data (`strip_controls`) and shown as
escapes in text printed to a terminal (`for_terminal`).
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls, and the Unicode bidirectional embeddings, overrides and
# isolates (U+202A-U+202E, U+2066-U+2069)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_controls(text: str) -> str:
    """`text` without control characters (tab and newline kept)."""
    return _CONTROLS.sub("", text)


def for_terminal(text: object) -> str:
    """`str(text)` with every control character (tab and newline kept) written as a visible escape (\\x1b,
    \\u202e), so that printing it cannot move the cursor, clear the screen or change the window's title."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def has_controls(text: str) -> bool:
    return bool(_CONTROLS.search(text))
