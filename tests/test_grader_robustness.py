"""Untrusted model output cannot crash, hang, exhaust memory or execute anything in the grader.

A generated adversarial list (thousands of strings: power and factorial towers, deep nesting,
unbalanced braces, code and TeX injection, very long inputs) and hypothesis-generated text go
through ``grade``/``grade_many``/``is_equivalent``. Every call must return a bool, stay within
its time limit plus a small slack, and leave the sentinel file uncreated.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from primekit.eval import _sandbox
from primekit.eval.answer import extract_answer, normalize_answer
from primekit.eval.grader import grade, grade_many, is_equivalent

LIMIT = 1.0  # seconds given to each call here
SLACK = _sandbox.GRACE_SECONDS + 1.0  # kill + restart bookkeeping on a busy machine


def _injections(sentinel: Path) -> list[str]:
    touch = f"touch {sentinel}"
    return [
        f"__import__('os').system('{touch}')",
        f'__import__("os").system("{touch}")',
        f"eval(\"__import__('os').system('{touch}')\")",
        f"exec('import os; os.system(\"{touch}\")')",
        f"(lambda: __import__('os').system('{touch}'))()",
        f"x.__class__.__mro__[1].__subclasses__()[0]('{touch}')",
        f"open('{sentinel}', 'w').write('x')",
        f"$({touch})",
        f"`{touch}`",
        f"; {touch}",
        f"\\immediate\\write18{{{touch}}}",
        f"\\operatorname{{__import__}}('os').system('{touch}')",
        r"\input{/etc/passwd}",
        r"\include{/etc/shadow}",
        r"\def\x{\x}\x",
        r"\newcommand{\a}{\a\a}\a",
    ]


def _payloads(sentinel: Path) -> list[str]:
    towers = [
        base + "".join("^{" + base for _ in range(height)) + "}" * height
        for base in ("2", "9", "10", "99", "x", "1.5", "e", r"\pi")
        for height in range(2, 7)
    ]
    factorials = [
        "(10^{10})!",
        "1000000!",
        "((10!)!)!",
        "(((5!)!)!)!",
        "10^{100}!",
        r"\binom{10^{10}}{10^{5}}",
        r"\Gamma(10^{9})",
        "9!!!!!!!!!!",
        r"\prod_{k=1}^{10^{9}} k",
        r"\sum_{k=1}^{10^{9}} k^{k}",
    ]
    big = [
        "9" * 5000,
        "1e999999999",
        "1.5e-999999999",
        r"9.9\times10^{999999999}",
        "2^{2^{100}}",
        "x^{10^{100}}",
        "(x+1)^{10^{6}}",
        r"\lim_{n\to\infty} n^{n^{n}}",
        r"\int_0^{10^{10}} x^{10^{10}} dx",
        r"\sqrt[10^{9}]{10^{10^{9}}}",
        r"\begin{pmatrix}" + r"\\".join(["9^{9^{9}}&1"] * 40) + r"\end{pmatrix}",
    ]
    nesting = [
        opener * depth + "1" + closer * depth
        for opener, closer in (("(", ")"), ("{", "}"), (r"\sqrt{", "}"), (r"\left(", r"\right)"))
        for depth in (13, 60, 500, 5000)
    ] + [r"\frac{" * depth + "1" + "}{2}" * depth for depth in (13, 60, 500)]
    unbalanced = [
        r"\frac{1}{",
        "}}}}{{{{",
        r"\boxed{" * 200,
        r"\left(" * 300,
        "$" * 999,
        r"\begin{pmatrix}1&2",
        r"\end{pmatrix}" * 30,
        "(((" * 100,
        ")))" * 100,
        "[1,2",
        r"\sqrt[",
        "^^^^^^",
        "\\" * 1001,
        "_{_{_{_{",
        "\x00\x01\x02",
        "\ud800\udfff",
        "ℵ₀ ∞ √ π ∑ ∫",
    ]
    long_inputs = [
        "1+" * 20_000 + "1",
        "x" * 100_000,
        r"\frac{1}{2}" * 5_000,
        " " * 50_000 + "5",
        "\n" * 50_000 + "5",
        "The answer is " * 5_000,
        "$x$ and " * 5_000,
        "1," * 20_000,
    ]
    return _injections(sentinel) + towers + factorials + big + nesting + unbalanced + long_inputs


_VARIANTS = ("@", "-@", r"\frac{@}{2}", "(@, @)", "x=@", r"@\%")
_WRAPPERS = (
    "@",
    "$@$",
    r"\boxed{@}",
    "The answer is @.",
    "#### @",
    "Final Answer: The final answer is $@$. I hope it is correct.",
)
_GOLDS = ("1", "x", r"\frac{1}{2}", "(1,2)", r"\text{Evelyn}")


def adversarial_answers(sentinel: Path) -> list[str]:
    """Every payload in several answer shapes (each then put in three response shapes)."""
    return [variant.replace("@", p) for p in _payloads(sentinel) for variant in _VARIANTS]


@pytest.fixture(scope="module")
def warm_worker() -> None:
    assert is_equivalent("x+1", "1+x", timeout=60)  # start-up is not part of the timed calls


@pytest.mark.slow
def test_adversarial_list_is_graded_without_harm(tmp_path: Path, warm_worker: None) -> None:
    sentinel = tmp_path / "executed"
    answers = adversarial_answers(sentinel)
    pairs = [
        (_WRAPPERS[(i + shift) % len(_WRAPPERS)].replace("@", answer), _GOLDS[i % len(_GOLDS)])
        for i, answer in enumerate(answers)
        for shift in range(0, len(_WRAPPERS), 2)
    ]
    assert len(set(pairs)) >= 2000
    start = time.monotonic()
    verdicts = grade_many(pairs, processes=2, timeout=LIMIT)
    elapsed = time.monotonic() - start
    assert all(isinstance(v, bool) for v in verdicts)
    assert not sentinel.exists()
    assert elapsed < 45


def test_each_dangerous_call_stays_within_its_time_limit(tmp_path: Path, warm_worker: None) -> None:
    sentinel = tmp_path / "executed"
    dangerous = _payloads(sentinel)[::3] + ["(x+1)^{1000}", "(x+y+z)^{200}"]
    slowest = 0.0
    for text in dangerous:
        for call in (is_equivalent, grade):
            start = time.monotonic()
            assert call(text, "x^{1000}+1", timeout=LIMIT) in (True, False)
            slowest = max(slowest, time.monotonic() - start)
    assert slowest < LIMIT + SLACK
    assert not sentinel.exists()


_LATEX_TOKENS = st.sampled_from(
    ["0", "1", "2", "9", "x", "y", "+", "-", "*", "/", "^", "!", "(", ")", "{", "}", "[", "]", ",", "=", ".",
     r"\frac", r"\sqrt", r"\pi", r"\infty", r"\cup", r"\le", r"\text", r"\boxed", r"\left(", r"\right)",
     "$", "%", " ", "^{", r"\begin{pmatrix}", "&", r"\\", r"\end{pmatrix}", "the answer is ", "####"]
)
_LATEX_LIKE = st.lists(_LATEX_TOKENS, max_size=40).map("".join)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pred=st.one_of(st.text(max_size=200), _LATEX_LIKE), gold=st.one_of(st.text(max_size=60), _LATEX_LIKE))
def test_random_text_never_crashes_or_overruns(pred: str, gold: str, warm_worker: None) -> None:
    for call in (is_equivalent, grade):
        start = time.monotonic()
        assert call(pred, gold, timeout=LIMIT) in (True, False)
        assert time.monotonic() - start < LIMIT + SLACK


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_extraction_and_normalisation_accept_any_text(text: str) -> None:
    answer = extract_answer(text)
    assert answer is None or isinstance(answer, str)
    assert isinstance(normalize_answer(text), str)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_LATEX_LIKE, _LATEX_LIKE), max_size=6))
def test_grade_many_agrees_with_grade(pairs: list[tuple[str, str]]) -> None:
    assert grade_many(pairs, processes=2, timeout=5) == [grade(r, g, timeout=5) for r, g in pairs]
