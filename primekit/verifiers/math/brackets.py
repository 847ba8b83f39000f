"""The one bracket scanner of the grader, and its one nesting limit.

Answer extraction (boxes, ``\\text{}``), normalisation, the numeric parser and the symbolic step
all need to match brackets. They share these functions, so every layer agrees on what a group
is, and they share :data:`MAX_NESTING`: an answer nested deeper is compared as a string only,
because latex2sympy's parser (and any recursive reader) slows down sharply with depth, and real
answers are never that deep.
"""

from __future__ import annotations

import re

__all__ = ["MAX_NESTING", "OPENERS", "CLOSERS", "group_end", "nesting", "split_top_level",
           "encloses"]

MAX_NESTING = 12
OPENERS, CLOSERS = "([{", ")]}"


def group_end(text: str, open_at: int, *, escapes: bool = True, limit: int | None = None
              ) -> int | None:
    """Index just past the bracket group opening at ``text[open_at]`` (``{...}``, ``(...)`` or
    ``[...]``; only that kind of bracket counts); None if it never closes (within ``limit``
    characters, when given).

    With ``escapes`` a backslash escapes the next character, so ``\\{`` does not count (LaTeX);
    without, every bracket counts (the published graders' box scanners)."""
    opener = text[open_at]
    closer = CLOSERS[OPENERS.index(opener)]
    stop = len(text) if limit is None else min(len(text), open_at + limit)
    pattern = re.compile((r"\\.|" if escapes else "") + f"[{re.escape(opener + closer)}]", re.DOTALL)
    depth = 0
    for match in pattern.finditer(text, open_at, stop):
        token = match.group()
        if token == opener:
            depth += 1
        elif token == closer:
            depth -= 1
            if depth == 0:
                return match.end()
    return None


def nesting(text: str) -> int:
    """Deepest bracket nesting in ``text`` (round, square and curly brackets alike)."""
    depth = deepest = 0
    for c in text:
        if c in OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        elif c in CLOSERS:
            depth -= 1
    return deepest


def split_top_level(text: str, separator: str = ",") -> list[str] | None:
    """Split at ``separator`` outside brackets; None if the brackets do not balance."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in OPENERS:
            depth += 1
        elif c in CLOSERS:
            depth -= 1
            if depth < 0:
                return None
        elif c == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts if depth == 0 else None


def encloses(text: str) -> bool:
    """True if the bracket opening at ``text[0]`` closes only at the last character."""
    depth = 0
    for i, c in enumerate(text):
        if c in OPENERS:
            depth += 1
        elif c in CLOSERS:
            depth -= 1
            if depth == 0 and i < len(text) - 1:
                return False
    return depth == 0
