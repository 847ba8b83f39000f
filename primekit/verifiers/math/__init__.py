r"""The math verifier: is a response's final answer equivalent to the gold answer?

In the spirit of math-verify's ``parse``/``verify``::

    from primekit.verifiers.math import grade, parse, verify
    answer = parse(r"... so the answer is $\boxed{\frac{1}{2}}$.")  # "\frac{1}{2}"
    verify("0.5", answer)                                      # True
    grade(response, gold)  # both steps at once; grade_many for many pairs in parallel

Modules: ``answer`` (final-answer extraction and normal forms), ``grader`` (the three equivalence
layers: string, ``numeric``, ``symbolic``), ``worker`` (the time- and memory-limited process the
symbolic layer runs in), ``brackets`` (the one bracket scanner). Model output is never executed,
and any timeout or error means "not equivalent", never an exception.
"""

from __future__ import annotations

from primekit.verifiers.math.answer import extract_answer
from primekit.verifiers.math.grader import (
    DEFAULT_TIMEOUT,
    GRADER_VERSION,
    grade,
    grade_answers,
    grade_many,
    is_equivalent,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "GRADER_VERSION",
    "grade",
    "grade_answers",
    "grade_many",
    "is_equivalent",
    "parse",
    "verify",
]


def parse(text: str) -> str | None:
    """The final answer a response states (boxed, "the answer is", ``####``, or its last number or
    formula), or None when it states none."""
    return extract_answer(text)


def verify(gold: str, answer: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True if ``answer`` (e.g. from :func:`parse`) equals the ``gold`` answer mathematically; the
    symbolic step gets at most ``timeout`` seconds, and running out means False."""
    return is_equivalent(answer, gold, timeout)
