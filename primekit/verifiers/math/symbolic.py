r"""Symbolic equivalence through math-verify, guarded against expressions that blow up.

This module is imported only inside the grader's worker process (``worker``), which also
applies the time and memory limits. math-verify parses LaTeX with latex2sympy2_extended into
*unevaluated* sympy trees (nothing is executed: no ``eval``/``sympify`` of the text), but its
``verify`` then calls ``doit()``, ``evalf()`` and ``simplify()``, and sympy evaluates integer
powers and factorials eagerly in C, where no signal can interrupt it. ``is_safe`` therefore
bounds, before ``verify`` runs, the size of every number the tree could produce:
``9^{9^{9^{9}}}``, ``((10!)!)!``, ``e^{e^{e^{e^{e}}}}`` or ``\prod_{k=1}^{10^9} k`` are refused
(never equal). Constructs that evaluate while being parsed are screened earlier, on the text
(``numeric.has_huge_power``).
"""

from __future__ import annotations

import math
from functools import lru_cache

from math_verify import parse, verify
from math_verify.parser import LatexExtractionConfig
from sympy import (
    Add,
    Basic,
    E,
    Float,
    I,
    Integer,
    MatrixBase,
    Mul,
    NumberSymbol,
    Pow,
    Product,
    Rational,
    Sum,
    Symbol,
    binomial,
    exp,
    factorial,
    factorial2,
    gamma,
    subfactorial,
)

__all__ = ["symbolic_equal", "is_safe"]

MAX_DIGITS = 10_000  # largest exact number (in decimal digits) any node may produce
MAX_EXPONENT = 1_000  # largest power of a symbolic base, e.g. (x+1)^1000
MAX_NODES = 3_000
MAX_RANGE = 10_000  # largest numeric bound of a sum or product, which doit() would iterate
_LATEX_ONLY = [LatexExtractionConfig()]
_FACTORIALS = (factorial, factorial2, subfactorial, gamma)


class _Unsafe(Exception):
    """The expression could make sympy build numbers beyond ``MAX_DIGITS`` digits."""


def _value(node: Basic) -> float | None:
    """Float estimate of a numeric subtree (inf on overflow); None when it is not a plain number."""
    if isinstance(node, (Integer, Rational)):
        try:
            return float(node.p) / float(node.q)
        except OverflowError:
            return math.inf
    if isinstance(node, Float):
        sign, mantissa, exponent, bits = node._mpf_
        if bits + exponent > 1000:
            return math.inf
        return float(node)
    if isinstance(node, NumberSymbol):
        return float(node)
    if isinstance(node, (Add, Mul)):
        values = [_value(arg) for arg in node.args]
        if any(v is None for v in values):
            return None
        total = 0.0 if isinstance(node, Add) else 1.0
        for v in values:
            total = total + v if isinstance(node, Add) else total * v
        return total
    if isinstance(node, (Pow, exp)):
        base, exponent = (_value(node.base), _value(node.exp)) if isinstance(node, Pow) else (math.e, _value(node.args[0]))
        if base is None or exponent is None:
            return None
        try:
            return math.inf if abs(exponent) > 1e6 else float(abs(base) ** exponent)
        except (OverflowError, ZeroDivisionError):
            return math.inf
    if isinstance(node, _FACTORIALS):
        n = _value(node.args[0])
        if n is None:
            return None
        return math.inf if n > 170 else math.gamma(max(n, 0) + 1)
    return None


def _digits(node: Basic) -> float:
    """Upper bound on the decimal digits of the exact numbers ``node`` can evaluate to."""
    if isinstance(node, (Integer, Rational)):
        return max(node.p.bit_length(), node.q.bit_length()) * 0.30103 + 1
    if isinstance(node, Float):
        sign, mantissa, exponent, bits = node._mpf_
        return abs(exponent + bits) * 0.30103 + 1
    if isinstance(node, exp):
        node = Pow(E, node.args[0], evaluate=False)
    if isinstance(node, Pow):
        exponent = _value(node.exp)
        base_digits = _digits(node.base)
        if exponent is None:
            return base_digits + _digits(node.exp)
        if not math.isfinite(exponent) or abs(exponent) > 1e6:
            raise _Unsafe("exponent")
        if node.base.free_symbols and abs(exponent) > MAX_EXPONENT:
            raise _Unsafe("symbolic power")
        return max(base_digits, 1) * max(abs(exponent), 1)
    if isinstance(node, _FACTORIALS):
        n = _value(node.args[0])
        if n is not None and (not math.isfinite(n) or n > 3000):
            raise _Unsafe("factorial")
        return (n * math.log10(max(n, 2)) + 1) if n is not None else _digits(node.args[0])
    if isinstance(node, binomial):
        n, k = _value(node.args[0]), _value(node.args[1])
        if n is not None and k is not None:
            if not (math.isfinite(n) and math.isfinite(k)):
                raise _Unsafe("binomial")
            return min(abs(k), abs(n - k)) * math.log10(max(abs(n), 2)) + 1
    if isinstance(node, (Sum, Product)):
        for limits in node.limits:
            for bound in map(_value, limits[1:]):
                if bound is not None and (not math.isfinite(bound) or abs(bound) > MAX_RANGE):
                    raise _Unsafe("summation range")
    child_digits = [_digits(arg) for arg in node.args]
    if isinstance(node, Mul):
        return sum(child_digits)
    return max(child_digits, default=1) + 1


def is_safe(parsed: object) -> bool:
    """False if evaluating ``parsed`` (a parse result) could build a number beyond the limits."""
    if isinstance(parsed, str):
        return True
    nodes = list(parsed) if isinstance(parsed, MatrixBase) else [parsed]
    if not all(isinstance(n, Basic) for n in nodes):
        return False
    try:
        size = sum(1 for n in nodes for _ in _walk(n))
        return size <= MAX_NODES and all(_digits(n) <= MAX_DIGITS for n in nodes)
    except (_Unsafe, RecursionError, OverflowError, ValueError, TypeError):
        return False


def _walk(node: Basic):
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if len(stack) > MAX_NODES:
            raise _Unsafe("too many nodes")
        stack.extend(current.args)


def parse_answer(latex: str) -> list:
    """math-verify's parse of one answer (already stripped of delimiters): [sympy, str] or []."""
    return parse(f"${latex}$", extraction_config=_LATEX_ONLY, parsing_timeout=None)


@lru_cache(maxsize=4096)  # Best-of-N samples repeat the same answers
def symbolic_equal(pred: str, gold: str) -> bool:
    """math-verify's ``verify(gold, pred)`` on the two answers, if both parse and are safe.

    Time limits are the caller's job (math-verify's own use SIGALRM and are disabled here).
    """
    gold_parsed = parse_answer(gold)
    pred_parsed = parse_answer(pred)
    if not gold_parsed or not pred_parsed:
        return False
    if not all(is_safe(item) for item in gold_parsed + pred_parsed):
        return False
    if verify(gold_parsed, pred_parsed, timeout_seconds=None):
        return True
    # complex arithmetic: latex2sympy reads i as a symbol; as the imaginary unit on both sides
    # (1+2i)(3-i) is 5+5i
    imaginary = [_with_imaginary_unit(item) for item in gold_parsed], [_with_imaginary_unit(item) for item in pred_parsed]
    if imaginary == (gold_parsed, pred_parsed):
        return False
    return bool(verify(*imaginary, timeout_seconds=None))


def _with_imaginary_unit(item: object) -> object:
    """A parsed answer with the symbol i (of any assumptions: latex2sympy makes it real) read as
    the imaginary unit; strings stay as they are."""
    if isinstance(item, Basic):
        named_i = [symbol for symbol in item.free_symbols if isinstance(symbol, Symbol) and symbol.name == "i"]
        if named_i:
            return item.subs({symbol: I for symbol in named_i})
    return item

