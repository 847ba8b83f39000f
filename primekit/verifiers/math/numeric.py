r"""Exact arithmetic on simple numeric answers, so that most pairs never need sympy.

Covers what most benchmark answers are: integers, decimals, scientific notation (``4.5e33``,
``4.5\times10^{33}``), fractions (``\frac{a}{b}``, ``a/b``), mixed numbers (``1\frac{1}{10}``),
radicals, ``\pi``, small powers and factorials, ``\infty``. Rational values stay exact
(``fractions.Fraction``); anything irrational becomes a float. Every operation is size-guarded
(no huge powers or factorials), so untrusted input cannot make this slow.

Decimals in an answer are usually rounded, so a comparison involving a decimal allows a
relative error of 1e-4 (Qwen2.5-Math's tolerance) but, for a plain decimal, no more than one
unit in its last place: ``0.3333`` and ``2.6667`` match 1/3 and 8/3, while
``9999.857142857143`` does not match 10000 and ``16386.16`` does not match ``16386.17``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from primekit.verifiers.math.brackets import MAX_NESTING, group_end, nesting

__all__ = ["Number", "evaluate", "numbers_equal", "has_huge_power"]

MAX_CHARS = 300
MAX_BITS = 20_000  # largest numerator/denominator kept exact
MAX_FACTORIAL = 500
MAX_SCI_EXPONENT = 400
_TOKEN = re.compile(
    r"(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<cmd>\\[A-Za-z]+)|(?P<sym>[-+*/^(){}\[\]!])|(?P<space>\s+)"
)
_ATOM_START = {"\\frac", "\\sqrt", "\\pi", "(", "{"}
_DECIMAL = re.compile(
    r"[-+]?(?P<int>\d*)(?:\.(?P<frac>\d*))?(?:[eE](?P<e>[-+]?\d+)|(?:\\times|\\cdot|\*)10\^\{?(?P<p>[-+]?\d+)\}?)?"
)


@dataclass(frozen=True)
class Number:
    """A numeric answer: exact ``Fraction`` when rational, float otherwise.

    ``significant_digits`` is the fewest significant digits among the decimal literals that
    went into the value (None when there were none). ``last_place`` is set when the whole
    answer is one decimal (``2.6667``, ``4.5e33``, ``4.5\\times10^{33}``): the value of one unit
    in its last digit. Both set the comparison tolerance.
    """

    value: Fraction | float
    significant_digits: int | None = None
    last_place: Fraction | None = None


class _Unsupported(Exception):
    """The text is not a plain numeric expression (or would be too costly to evaluate)."""


def _significant_digits(literal: str) -> int | None:
    mantissa = re.split(r"[eE]", literal)[0]
    if "." not in mantissa and mantissa == literal:
        return None
    digits = mantissa.replace(".", "").lstrip("0")
    return max(len(digits), 1)


def _merge(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _check_size(value: Fraction | float) -> Fraction | float:
    if isinstance(value, Fraction):
        if value.numerator.bit_length() > MAX_BITS or value.denominator.bit_length() > MAX_BITS:
            raise _Unsupported("number too large")
    elif math.isnan(value) or math.isinf(value):
        raise _Unsupported("not a finite number")
    return value


def _integer_root(n: int, k: int) -> int | None:
    """Exact k-th root of a non-negative integer, or None."""
    if n < 2:
        return n
    guess = 1 << -(-n.bit_length() // k)  # >= the true root
    while True:
        better = ((k - 1) * guess + n // guess ** (k - 1)) // k
        if better >= guess:
            break
        guess = better
    return guess if guess**k == n else None


def _power(base: Number, exponent: Number) -> Number:
    b, e = base.value, exponent.value
    digits = _merge(base.significant_digits, exponent.significant_digits)
    if isinstance(e, Fraction) and e.denominator == 1:
        n = e.numerator
        if isinstance(b, Fraction):
            size = max(b.numerator.bit_length(), b.denominator.bit_length(), 1)
            if abs(n) * size > MAX_BITS:
                raise _Unsupported("power too large")
            return Number(_check_size(b**n), digits)
        if abs(n) > 10_000:
            raise _Unsupported("power too large")
        return Number(_check_size(b**n), digits)
    if b < 0:
        raise _Unsupported("fractional power of a negative number")
    if isinstance(b, Fraction) and isinstance(e, Fraction) and e.denominator <= 64:
        top, bottom = _integer_root(b.numerator, e.denominator), _integer_root(b.denominator, e.denominator)
        if top is not None and bottom is not None:
            return _power(Number(Fraction(top, bottom), digits), Number(Fraction(e.numerator), None))
    if abs(float(e)) > 10_000:
        raise _Unsupported("power too large")
    return Number(_check_size(float(b) ** float(e)), digits)


def _binary(op: str, a: Number, b: Number) -> Number:
    digits = _merge(a.significant_digits, b.significant_digits)
    x, y = a.value, b.value
    if op == "+":
        value = x + y
    elif op == "-":
        value = x - y
    elif op == "*":
        value = x * y
    else:
        if y == 0:
            raise _Unsupported("division by zero")
        value = x / y
    return Number(_check_size(value), digits)


class _Parser:
    """Recursive descent over a token list: sums, products (also implicit), powers, atoms."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens = tokens
        self.pos = 0

    def peek(self, offset: int = 0) -> str | None:
        i = self.pos + offset
        return self.tokens[i][1] if i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _Unsupported(f"expected {expected!r}")
        self.pos += 1
        return token

    def parse(self) -> Number:
        value = self.sum()
        if self.peek() is not None:
            raise _Unsupported("trailing input")
        return value

    def sum(self) -> Number:
        value = self.product()
        while self.peek() in ("+", "-"):
            op = self.take()
            value = _binary(op, value, self.product())
        return value

    def product(self) -> Number:
        value = self.signed()
        while True:
            token = self.peek()
            if token in ("*", "\\cdot", "\\times"):
                self.take()
                value = _binary("*", value, self.signed())
            elif token in ("/", "\\div"):
                self.take()
                value = _binary("/", value, self.signed())
            elif token in _ATOM_START:
                value = _binary("*", value, self.power())
            else:
                return value

    def signed(self) -> Number:
        if self.peek() in ("-", "+"):
            sign = self.take()
            value = self.signed()
            return Number(-value.value, value.significant_digits) if sign == "-" else value
        return self.power()

    def power(self) -> Number:
        base = self.factorial(self.atom())
        if self.peek() == "^":
            self.take()
            return _power(base, self.exponent())
        return base

    def exponent(self) -> Number:
        token = self.peek()
        if token in ("-", "+"):
            self.take()
            value = self.exponent()
            return Number(-value.value, value.significant_digits) if token == "-" else value
        return self.atom()

    def factorial(self, value: Number) -> Number:
        while self.peek() == "!":
            self.take()
            n = value.value
            if not isinstance(n, Fraction) or n.denominator != 1 or not 0 <= n <= MAX_FACTORIAL:
                raise _Unsupported("factorial")
            value = Number(Fraction(math.factorial(int(n))), value.significant_digits)
        return value

    def group(self) -> Number:
        if self.peek() == "{":
            self.take()
            value = self.sum()
            self.take("}")
            return value
        return self.atom()

    def atom(self) -> Number:
        kind, token = self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)
        if token is None:
            raise _Unsupported("unexpected end")
        self.pos += 1
        if kind == "num":
            return self.number(token)
        if token in ("(", "{"):
            value = self.sum()
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\pi":
            return Number(math.pi)
        if token == "\\frac":
            top = self.group()
            return _binary("/", top, self.group())
        if token == "\\sqrt":
            index = Number(Fraction(2))
            if self.peek() == "[":
                self.take()
                index = self.sum()
                self.take("]")
            return _power(self.group(), _binary("/", Number(Fraction(1)), index))
        raise _Unsupported(f"token {token!r}")

    def number(self, literal: str) -> Number:
        parts = re.split(r"[eE]", literal)
        if len(parts) == 2 and abs(int(parts[1])) > MAX_SCI_EXPONENT:
            raise _Unsupported("exponent too large")
        if len(literal) > 400:
            raise _Unsupported("literal too long")
        value = Number(Fraction(literal), _significant_digits(literal))
        if self.peek(0) == "\\frac" and literal.isdigit() and self._integer_fraction_follows():
            # mixed number: 1\frac{1}{10} = 1 + 1/10
            self.take()
            fraction = _binary("/", self.group(), self.group())
            return _binary("+", value, fraction)
        if self.peek() is not None and self.tokens[self.pos][0] == "num":
            raise _Unsupported("two numbers in a row")
        return value

    def _integer_fraction_follows(self) -> bool:
        pattern = [self.peek(k) for k in range(1, 7)]
        return (
            pattern[0] == "{" and pattern[1] is not None and pattern[1].isdigit() and pattern[2] == "}"
            and pattern[3] == "{" and pattern[4] is not None and pattern[4].isdigit() and pattern[5] == "}"
        )


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _Unsupported(f"character {text[pos]!r}")
        pos = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    return tokens


def evaluate(text: str) -> Number | None:
    r"""The value of a plain numeric expression, or None if ``text`` is anything else.

    ``text`` should already be normalised (no ``\left``, ``\dfrac``, thousands separators).
    """
    text = text.strip()
    if not text or len(text) > MAX_CHARS or nesting(text) > MAX_NESTING:
        return None
    infinity = re.fullmatch(r"([-+]?)\\infty", text)
    if infinity:
        return Number(-math.inf if infinity.group(1) == "-" else math.inf)
    try:
        number = _Parser(_tokens(text)).parse()
    except (_Unsupported, ZeroDivisionError, OverflowError, ValueError, IndexError):
        return None
    decimal = _DECIMAL.fullmatch(text)
    if decimal and number.significant_digits is not None:
        scale = int(decimal.group("e") or decimal.group("p") or 0)
        places = len(decimal.group("frac") or "")
        number = Number(number.value, number.significant_digits, Fraction(10) ** (scale - places))
    return number


def numbers_equal(a: Number, b: Number) -> bool:
    """Exact equality for exact values, a tolerance when a decimal or an irrational is involved.

    Two irrational values may differ by 1e-9 (relative). With a decimal involved the relative
    difference may be up to 1e-4, and up to 10**-d for the fewest d significant digits, but
    less than one unit in the last place when a side is a plain decimal.
    """
    x, y = a.value, b.value
    if x == y:
        return True
    if any(isinstance(v, float) and math.isinf(v) for v in (x, y)):
        return False
    digits = _merge(a.significant_digits, b.significant_digits)
    places = [p for p in (a.last_place, b.last_place) if p is not None]
    exact = isinstance(x, Fraction) and isinstance(y, Fraction)
    if digits is None and exact:
        return False
    try:
        difference, size = abs(x - y), max(abs(x), abs(y))
        if digits is None:
            return difference <= 1e-9 * size + 1e-12
        if places:
            noise = 0 if exact else 1e-12 * float(size)
            return difference * 10**4 <= size and difference < max(places) + noise
        return difference * 10 ** min(max(digits, 4), 12) <= size
    except OverflowError:
        return False


# Largest exponent and factorial argument that the symbolic step may see. Bigger ones would
# make sympy build numbers with more than ~10^4 digits, some of them while merely parsing
# (an interval "(a, b)" compares its ends).
MAX_EXPONENT_VALUE = 10_000
MAX_FACTORIAL_ARGUMENT = 3_000
MAX_TOWER_HEIGHT = 3
_NUMERIC_TEXT = re.compile(r"(?:[\d\s.+\-*/^{}()!]|\\pi|\\cdot|\\times|\\frac|\\sqrt|(?<![A-Za-z\\])e(?![A-Za-z]))*")


def _group_before(text: str, end: int) -> str:
    """The operand that ends just before ``end``: a bracket group, a number, or a symbol."""
    i = end
    while i > 0 and text[i - 1] == "!":
        i -= 1
    while i > 0 and text[i - 1] == " ":
        i -= 1
    if i > 0 and text[i - 1] in ")}":
        depth = 0
        for j in range(i - 1, -1, -1):
            depth += {")": 1, "}": 1, "(": -1, "{": -1}.get(text[j], 0)
            if depth == 0:
                return text[j:end]
        return text[:end]
    j = i
    while j > 0 and (text[j - 1].isdigit() or text[j - 1] == "."):
        j -= 1
    return text[j:end] if j < i else text[max(0, i - 1) : end]


def _group_after(text: str, start: int) -> str:
    """The exponent or argument that starts at ``start``: a group, a number, or one token."""
    i = start
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] in "{(":
        end = group_end(text, i, escapes=False)
        return text[i + 1 : end - 1] if end is not None else text[i + 1 :]
    match = re.match(r"-?\d+(?:\.\d+)?|\\[A-Za-z]+|.", text[i:])
    return match.group() if match else ""


def _power_tower_height(text: str) -> int:
    """Most exponents nested in one another (``x^{y^{z}}`` has 3)."""
    stack: list[bool] = []  # per open brace: is it an exponent group?
    highest = 0
    for i, c in enumerate(text):
        if c == "{":
            stack.append(i > 0 and text[i - 1] == "^")
        elif c == "}" and stack:
            stack.pop()
        elif c == "^":
            highest = max(highest, sum(stack) + 1)
    return highest


def has_huge_power(text: str) -> bool:
    r"""True if ``text`` raises to, or takes the factorial or Gamma of, a huge numeric value,
    or stacks more than ``MAX_TOWER_HEIGHT`` exponents.

    ``9^{9^{9^{9}}}``, ``x^{10^{100}}``, ``(10!)!``, ``\Gamma(10^{9})``, ``e^{e^{e^{e}}}`` and
    ``x^{x^{x^{x}}}`` qualify; symbolic exponents (``2^{2^{n}}``) and moderate ones
    (``2^{2023}``, ``10^{100}``) do not.
    """
    if _power_tower_height(text) > MAX_TOWER_HEIGHT:
        return True
    for match in re.finditer(r"\^|!(?!=)|\\Gamma(?![A-Za-z])", text):
        if match.group() == "^":
            operand, limit = _group_after(text, match.end()), MAX_EXPONENT_VALUE
        elif match.group() == "!":
            operand, limit = _group_before(text, match.start()), MAX_FACTORIAL_ARGUMENT
        else:
            operand, limit = _group_after(text, match.end()), MAX_FACTORIAL_ARGUMENT
        if not operand.strip() or not _NUMERIC_TEXT.fullmatch(operand):
            continue  # symbolic: sympy keeps it unevaluated
        value = evaluate(re.sub(r"(?<![A-Za-z\\])e(?![A-Za-z])", "(2.718281828)", operand))
        if value is None or abs(float(value.value)) > limit:
            return True
    return False
