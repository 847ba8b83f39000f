"""Kinds of answer pairs the grader used to miss, each with hand-checked verdicts in both directions
(prediction vs gold and gold vs prediction): complex arithmetic, trigonometry in degrees, one
function's equation under different names, physical quantities with units and constants, and a
named constant (\\mathrm{E}, Euler's number) against expressions that only contain it."""

from __future__ import annotations

import pytest

from primekit.verifiers.math import is_equivalent

CASES = {
    "complex": [
        ("(1+2i)(3-i)", "5+5i", True),   # 3 - i + 6i - 2i^2 = 5 + 5i
        ("(2+i)^2", "3+4i", True),       # 4 + 4i + i^2
        ("(1+i)(1-i)", "2", True),
        ("\\frac{1+i}{1-i}", "i", True),  # (1+i)^2 / 2 = 2i / 2
        ("i(2-3i)", "3+2i", True),
        ("(1+2i)(3-i)", "5-5i", False),
        ("(3+4i)(3-4i)", "24", False),   # 9 + 16 = 25
        ("(2+i)^2", "5+4i", False),
    ],
    "trig degrees": [
        ("\\cos x", "\\sin(90^\\circ - x)", True),
        ("\\sin(30^\\circ)", "\\frac12", True),
        ("\\cos(60^\\circ)", "\\frac{1}{2}", True),
        ("\\tan 45^\\circ", "1", True),
        ("\\cos(90^\\circ + x)", "-\\sin x", True),
        ("\\cos x", "\\sin(180^\\circ - x)", False),  # that is sin x
        ("\\sin(30^\\circ)", "\\frac{\\sqrt{3}}{2}", False),
        ("\\tan 45^\\circ", "\\sqrt{3}", False),
    ],
    "function names": [
        ("y = 2x+3", "f(x) = 2x+3", True),
        ("g(x) = x^2-1", "y = x^2 - 1", True),
        ("p(x)=x^3", "q(x)=x^3", True),
        ("h(t)=t^2", "y=t^2", True),
        ("f(x) = (x+1)^2", "y = x^2+2x+1", True),
        ("y=2x+3", "f(x)=2x+4", False),
        ("f(x)=x^2", "g(t)=x^2", False),  # two arguments: not one function
        ("x = 3", "y = 3", False),        # two variables, no function notation
    ],
    "units and constants": [
        ("9.8\\,\\mathrm{m/s^2}", "9.8", True),
        ("3\\times 10^8 \\text{ m/s}", "3\\times10^{8}", True),
        ("5 \\text{ N}", "5", True),
        ("\\frac{1}{2}mv^2", "\\frac{mv^2}{2}", True),
        ("2\\pi\\sqrt{\\frac{L}{g}}", "2\\pi\\sqrt{L/g}", True),
        ("\\frac{kq_1q_2}{r^2}", "\\frac{k q_1 q_2}{r^{2}}", True),
        ("6.67\\times10^{-11}\\,\\mathrm{N\\cdot m^2/kg^2}", "6.67\\times10^{-11}", True),
        ("6.67\\times10^{-11}\\,\\mathrm{N\\cdot m^2/kg^2}", "6.67\\times10^{-10}", False),
        ("mgh", "\\frac{1}{2}mgh", False),
        ("9.8\\,\\mathrm{m/s^2}", "9.6", False),
    ],
    "named constant": [
        ("\\mathrm{E}", "\\mathrm{E}", True),
        ("\\mathrm{E}", "e", True),
        ("\\mathrm{E}", "\\mathrm{E}+1", False),
        ("\\mathrm{E}", "2\\mathrm{E}", False),
        ("\\mathrm{E}", "\\mathrm{E}^2", False),
        ("\\mathrm{E}", "\\frac{\\mathrm{E}}{2}", False),
        ("\\mathrm{E}", "1-\\mathrm{E}", False),
    ],
}


@pytest.mark.parametrize("kind, pred, gold, equal",
                         [(kind, *case) for kind, cases in CASES.items() for case in cases],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_both_directions(kind, pred, gold, equal):
    assert is_equivalent(pred, gold) is equal, (pred, gold)
    assert is_equivalent(gold, pred) is equal, (gold, pred)


def test_each_kind_has_five_cases_each_way():
    for kind, cases in CASES.items():
        assert len(cases) >= 5, kind
        assert any(equal for *_, equal in cases) and any(not equal for *_, equal in cases), kind


def test_choice_letters_still_work():
    assert is_equivalent("(E) 12", "E") and is_equivalent("E", "E") and not is_equivalent("(D) 12", "E")
