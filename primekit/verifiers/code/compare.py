"""Is a program's output the expected one? Pure functions, run by the verifier *outside* the
sandbox, so a program never sees the expected outputs it is compared with.

Standard output (``stdout_matches``) follows the rules of the APPS / PRIME checker, which accept
an answer when one of these holds:

1. the two texts are equal once leading and trailing whitespace is removed;
2. their non-empty lines, each stripped, are equal;
3. they hold the same number of whitespace-separated tokens, and every pair of tokens is equal as
   text or as numbers within ``rel_tol`` (1e-5, plus an absolute 1e-8: numpy's ``allclose``
   defaults that PRIME uses).

PRIME applies rule 3 line by line (a line must be one number); comparing tokens instead also
accepts numbers laid out differently on lines ("1 2" for "1\\n2"), which judges such as
Codeforces accept too.

Return values (``call_result_matches``) arrive as JSON data (tuples already became lists). As in
the APPS checker, the value matches the expected one, or the first element of an expected list
(APPS stores a function's result as ``[result]``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["stdout_matches", "call_result_matches", "REL_TOL", "ABS_TOL"]

REL_TOL = 1e-5
ABS_TOL = 1e-8


def _number(token: str) -> float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _tokens_match(actual: str, expected: str) -> bool:
    if actual == expected:
        return True
    a, b = _number(actual), _number(expected)
    return a is not None and b is not None and abs(a - b) <= ABS_TOL + REL_TOL * abs(b)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def stdout_matches(actual: str, expected: str) -> bool:
    """True if a program's standard output answers a test whose expected output is ``expected``."""
    if actual.strip() == expected.strip():
        return True
    if _lines(actual) == _lines(expected):
        return True
    got, want = actual.split(), expected.split()
    return len(got) == len(want) and bool(want) and all(_tokens_match(g, w) for g, w in zip(got, want))


def call_result_matches(actual: Any, expected: Any) -> bool:
    """True if a function's (JSON) return value equals the expected one (or ``expected[0]``).

    Both sides are plain JSON data here, so ``==`` cannot be redefined by the program.
    """
    if actual == expected:
        return True
    return isinstance(expected, list) and len(expected) > 0 and actual == expected[0]
