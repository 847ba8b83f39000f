"""Answer extraction and normalisation, against hand-written expectations."""

from __future__ import annotations

import subprocess
import sys

import pytest

from primekit.verifiers.math.answer import extract_answer, final_answer_part, normalize_answer

EXTRACTION = [
    # boxes: last one wins, nested braces kept, \fbox and "\boxed 5" forms
    (r"First $\boxed{3}$, then finally \boxed{\frac{1}{\sqrt{2}}}.", r"\frac{1}{\sqrt{2}}"),
    (r"so the area is \fbox{7} square units", "7"),
    ("the value is $\\boxed 5$ indeed", "5"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"\boxed{\boxed{4}}", "4"),
    (r"x = \boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    # several boxes joined by "and"/commas form one answer; unrelated earlier boxes do not
    (r"The integers are \boxed{-2} and \boxed{1}.", "-2, 1"),
    (r"$\boxed{1}\boxed{2}$", "1, 2"),
    (r"\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}", "(2, 2), (6, 2)"),
    (r"\boxed{1} no no no no no \boxed{2}", "2"),
    ("We get \\boxed{200} first.\n\nLater the total is \\boxed{255}.", "255"),
    # Minerva format (the last one, before any few-shot continuation)
    ("Final Answer: The final answer is $28 \\%$. I hope it is correct.", r"28 \%"),
    (
        "so $\\boxed{200}$ then. Final Answer: The final answer is $10,455$. I hope it is correct.",
        "10,455",
    ),
    (
        "Final Answer: The final answer is $[-3, 2]$. I hope it is correct. Wait, no. Final Answer: "
        "The final answer is $(-\\infty, -3]$. I hope it is correct.",
        r"(-\infty, -3]",
    ),
    ("The answer is \\boxed{5}.\n\nProblem:\nFind y.\n\nSolution: \\boxed{7}", "5"),
    # answer phrases
    (r"Therefore, the answer is $\frac{3}{4}$.", r"\frac{3}{4}"),
    ("The final answer is 12,000,023. I hope it is correct", "12,000,023"),
    ("Final Answer: The largest $n$ is 34.", "34"),
    ("Answer: C", "C"),
    ("After checking every option, the correct option is (B).", "(B)"),
    ("Answer \\( 9 \\)", "9"),
    ("The answer is $12$ and $13$.", "12, 13"),
    # GSM8K
    ("Natalia sold 48/2 = 24 clips in May.\n#### 72", "72"),
    ("#### 1,000\n", "1,000"),
    # fallbacks: last formula or number
    ("so she has 42 apples left.", "42"),
    ("P(A) = (1/2) * (4/3) = 2/3. <|im_start|>user", "2/3"),
    ("the solution is $x = 5$.", "x = 5"),
    ("It is between 1 000 and 2 500", "2 500"),
    (r"the total is \frac{10}{9}", r"\frac{10}{9}"),
    ("not a number in XJ2K", None),
    ("", None),
    ("I cannot solve this.", None),
]


@pytest.mark.parametrize("text, expected", EXTRACTION)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


NORMALIZATION = [
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
    (r"\dfrac{1}{2}", r"\frac{1}{2}"),
    (r"\tfrac12", r"\frac{1}{2}"),
    (r"90^\circ", "90"),
    (r"90^{\circ}", "90"),
    ("45°", "45"),
    (r"50\%", "50"),
    ("50%", "50"),
    (r"5 \text{ cm}", "5"),
    (r"15\mbox{ cm}^2", "15"),
    ("10 dollars", "10"),
    ("100 square units", "100"),
    (r"\frac{1}{3} \textbf{meters}", r"\frac{1}{3}"),
    ("1,000", "1000"),
    ("7,425,000", "7425000"),
    (r"10{,}000", "10000"),
    (r"10,\!000", "10000"),
    ("1 000", "1000"),
    ("(1,2)", "(1,2)"),
    ("(1,000,2)", "(1,0,2)"),  # a tuple, not a thousands separator (leading zeros then go)
    ("32, 349", "32,349"),
    ("x = 3", "3"),
    ("x = 5+5+1 = 7 = 11", "11"),
    ("k=\\frac{1}{3}", r"\frac{1}{3}"),
    (r"x \in [-2,7]", "[-2,7]"),
    (r"x \approx 11", "11"),
    (r"\frac{1}{3} \approx 0.33", r"\frac{1}{3}"),
    ("(p,q)=(3,2)", "(3,2)"),
    ("a=4, -8, -10", "4,-8,-10"),
    (r"\$16,\!386.20", "16386.2"),
    ("3.", "3"),
    ("025", "25"),
    ("0.50", "0.5"),
    ("27.0", "27"),
    (".5", "0.5"),
    (r"\sqrt2", r"\sqrt{2}"),
    (r"2 \sin b \cos a", r"2\sin b\cos a"),
    (r"\text{(C)}", "C"),
    ("(B)", "B"),
    (r"\text{Evelyn}", "Evelyn"),
    (r"12\text{ and }13", "12,13"),
    (r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"),
    (r"\{1,2\}", "{1,2}"),
    (r"(1, +\infty)", r"(1,\infty)"),
    (r"\varnothing", r"\emptyset"),
    ("$\\frac{1}{2}$", r"\frac{1}{2}"),
    (r"\boxed{42}", "42"),
    ("sqrt(2)", r"\sqrt{2}"),
    ("x**2+1", "x^2+1"),
    ("3 million", r"3\times10^{6}"),
    ("7 3/4", r"7\frac{3}{4}"),
    (r"0.\overline{3}", r"\frac{3}{9}"),  # 0.333... = 3/9
    (r"5^{\text{th}}", "5"),
    ("**42**", "42"),
    ("−5", "-5"),  # unicode minus
]


@pytest.mark.parametrize("answer, expected", NORMALIZATION)
def test_normalize_answer(answer: str, expected: str) -> None:
    assert normalize_answer(answer) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"$\frac{1}{2}$", r"$\frac{1}{2}$"),  # bare answers are kept as they are
        ("12 and 13", "12 and 13"),
        (r"5 \text{ cm}", r"5 \text{ cm}"),
        ("np.arcsin(10/13)", "np.arcsin(10/13)"),
        (r"Thus $\boxed{14{,}916}$ is our answer.", "14{,}916"),
        ("She pays 7 dollars.\n#### 7", "7"),
        ("the number is not 10 which is 1,000.99", "1,000.99"),
        (r"Therefore $x \geq 5$ is the solution.", r"x \geq 5"),
        ("$1$ and $2$ and $3$", "1, 2, 3"),
    ],
)
def test_final_answer_part(text: str, expected: str) -> None:
    assert final_answer_part(text) == expected


def test_the_public_api_parses_then_verifies_without_loading_torch_or_sympy():
    """``primekit.verifiers.math``: parse (extraction) then verify(gold, answer) (equivalence), as
    math-verify's API; importing it loads neither torch nor sympy (sympy lives in the worker)."""
    code = (
        "import sys\n"
        "from primekit.verifiers.math import grade, parse, verify\n"
        "answer = parse(r'so the answer is $\\boxed{\\frac{1}{2}}$.')\n"
        "assert answer == r'\\frac{1}{2}', answer\n"
        "assert parse('I cannot tell.') is None\n"
        "assert verify('0.5', answer) and not verify('0.6', answer) and not verify('0.5', None)\n"
        "assert grade(r'so \\boxed{2/4}', '1/2')\n"
        "assert 'torch' not in sys.modules and 'sympy' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
