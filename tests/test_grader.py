"""Answer equivalence: a hand-written case table, full-response grading, parallel grading,
time limits off the main thread, and agreement with Qwen2.5-Math's labels on real responses."""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from primekit.verifiers.math import grader, worker
from primekit.verifiers.math import grade, grade_many, is_equivalent
from primekit.paths import data_dir

T, F = True, False

# (pred, gold, expected). Decimal tolerance: a decimal may differ from the exact value by less
# than one unit in its last digit and by at most 1e-4 relative.
CASES = [
    # fractions
    (r"\frac{1}{2}", "0.5", T),
    ("1/2", r"\frac{1}{2}", T),
    (r"\dfrac{3}{4}", r"\frac{3}{4}", T),
    (r"\tfrac34", "0.75", T),
    (r"\frac{2}{4}", r"\frac{1}{2}", T),
    (r"\frac{1}{3}", "0.3333", T),  # |1/3 - 0.3333| = 3.3e-5 < 1e-4 (last place)
    (r"\frac{2}{3}", "0.6666", T),  # truncated: |2/3 - 0.6666| = 6.7e-5 < 1e-4
    (r"\frac{1}{3}", "0.33", F),  # relative error 1e-2 > 1e-4
    ("-10/9", r"-\frac{10}{9}", T),
    (r"\frac{-10}{9}", r"-\frac{10}{9}", T),
    (r"\frac{5}{16}", r"\frac{3}{8}", F),
    (r"\frac{11}{10}", r"1\frac{1}{10}", T),  # mixed number 1 + 1/10
    ("1.1", r"1\frac{1}{10}", T),
    ("12.6", r"12\frac{3}{5}", T),  # 12 + 3/5
    (r"1\frac{1}{9}", r"1\frac{1}{10}", F),
    (r"\frac{1}{12}", "0.0833333333333333", T),
    (r"\frac{100}{3}", "33.3", F),  # 33.333 vs 33.3: relative error 1e-3
    (r"\frac{7}{2}", "3.5", T),
    (r"\frac{31}{4}", "7 3/4", T),  # 7 + 3/4
    # radicals
    (r"3\sqrt{13}", r"\sqrt{117}", T),  # 117 = 9 * 13
    (r"2\sqrt{2}", r"\sqrt{8}", T),
    (r"\sqrt2", r"\sqrt{2}", T),
    (r"\frac{1}{2}\sqrt{3}", r"\frac{\sqrt{3}}{2}", T),
    (r"\frac{1}{\sqrt{3}}", r"\frac{\sqrt{3}}{3}", T),
    ("4", r"4\sqrt{2}", F),
    ("1.4142", r"\sqrt{2}", T),  # sqrt 2 = 1.41421356; diff 1.4e-5 < 1e-4
    ("1.41", r"\sqrt{2}", F),  # relative error 3e-3
    ("3", r"\sqrt[3]{27}", T),
    (r"\sqrt{3}+2", r"2+\sqrt{3}", T),
    (r"\frac{1+\sqrt{5}}{2}", "2", F),
    (r"\frac{34}{16}+\frac{\sqrt{1358}}{16}", "4", F),  # 2.125 + 2.303 = 4.428
    (r"\frac{\sqrt{\sqrt{11}+\sqrt{194}}}{2\sqrt{33}+15}", r"\frac{\sqrt{\sqrt{11}+\sqrt{194}}}{15+2\sqrt{33}}", T),
    ("1", r"1\sqrt{19}", F),
    (r"\sqrt 2+\sqrt 5", r"\sqrt{2}+\sqrt{5}", T),
    # percentages: a side written with % may be read as a hundredth
    (r"50\%", "0.5", T),
    ("0.5", r"50\%", T),
    ("50%", "50", T),
    ("28", r"28\%", T),
    ("28 percent", r"28\%", T),
    ("0.28", "28", F),  # no % anywhere: 0.28 is not 28
    ("28/100", "28", F),
    ("10%", "0.1", T),
    ("10%", "0.2", F),
    (r"\frac{1}{8}", r"12.5\%", T),  # 12.5 / 100 = 1/8
    ("1", r"100\%", T),
    # units and words
    (r"5 \text{ cm}", "5", T),
    ("10 dollars", "10", T),
    (r"\$10", "10", T),
    (r"15\mbox{ cm}^2", "15", T),
    (r"125\textnormal{ miles}", "125", T),
    (r"0.06 \text{ yuan}", "0.06", T),
    (r"6 \text{ cm}", "5", F),
    (r"\frac{1}{3} \textbf{meters}", r"\frac13", T),
    ("180 minutes", "3", F),
    # intervals and unions
    ("[0,1)", "[0,1)", T),
    ("[0,1]", "[0,1)", F),
    ("(0,9)", "[0,9)", F),
    (r"(-\infty,3]", r"(-\infty, 3]", T),
    ("(0.6,2.6667]", r"(\frac{3}{5},\frac{8}{3}]", T),  # |8/3 - 2.6667| = 3.3e-5
    (r"[2,\infty)\cup(-\infty,-3]", r"(-\infty,-3]\cup[2,\infty)", T),
    (r"(-\infty,-3]\cup[2,\infty)", "[-3,2]", F),
    (r"x \in [-2,7]", "[-2, 7]", T),
    (r"(1,\infty)", r"(1, +\infty)", T),
    ("[-1,0.5)", r"\left[ -1, \frac{1}{2} \right)", T),
    (r"\{-1\} \cup [0,7)", r"\{-1\}\cup[0,7)", T),
    # tuples and points
    ("(1, 2)", "(1,2)", T),
    ("(2,1)", "(1,2)", F),
    ("(1,4.5)", r"(1,\frac{9}{2})", T),
    (r"(3,\frac{\pi}{2})", r"\left( 3, \frac{\pi}{2} \right)", T),
    ("(6, 31, -1)", "(6,31,-1)", T),
    ("(3,2)", "(p,q)=(3,2)", T),
    ("(1,2)", "(1,2,3)", F),
    ("(1, 3), (2, 2), (3, 3)", "(2, 2), (1, 3), (3, 3)", T),
    (r"\left( \frac{4}{5}, \frac{1}{5} \right)", r"\left(\frac{4}{5},\frac{1}{5}\right)", T),
    ("(7, 6)", "(7,6)", T),
    # sets and lists
    (r"\{2,1\}", r"\{1,2\}", T),
    (r"\{1,2\}", r"\{1,2,3\}", F),
    ("-2, 1", "1, -2", T),
    (r"\{-2021, 2021\}", r"\pm 2021", T),
    ("2021", r"\pm 2021", F),
    (r"\varnothing", r"\emptyset", T),
    ("1,2,3", "1 and 2 and 3", T),
    ("-10,-8,4", "a=4, -8, -10", T),
    (r"{1,3}", "(1,3)", T),  # set read in the tuple's order
    (r"{1,3}", "(3,1)", F),
    # matrices and vectors
    (r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", T),
    (r"\begin{pmatrix}1&2\\3&5\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", F),
    (r"\begin{pmatrix}0.5\\\frac14\end{pmatrix}", r"\begin{pmatrix}\frac{1}{2}\\0.25\end{pmatrix}", T),
    (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\left[\begin{array}{cc}1 & 2 \\3 & 4\end{array}\right]", T),
    (r"\begin{pmatrix}1&2\\3&4\end{pmatrix}+\begin{pmatrix}5&6\\7&8\end{pmatrix}", r"\begin{pmatrix}6&8\\10&12\end{pmatrix}", T),
    (r"\begin{pmatrix} x & 2x \end{pmatrix}", r"\begin{pmatrix} x & x+x \end{pmatrix}", T),
    (r"\begin{pmatrix} 3 \\ 2 \\ -6 \end{pmatrix}", r"\begin{pmatrix} 3 \\ 2 \\ 6 \end{pmatrix}", F),
    # equations, assignments, relations
    ("3", "x = 3", T),
    ("x=3", "3", T),
    ("y=3", "x=3", F),  # different variables
    ("y=1+2x", "y=2x+1", T),
    (r"y=-\frac{1}{2}x+\frac{3}{4}", "2x+4y-3=0", T),
    ("-34x-45y+20z-100=0", "34x+45y-20z+100=0", T),
    ("x^2/16 + y^2/12 = 1/4", "x^2/4 + y^2/3 = 1", T),
    ("x = 5+5+1 = 7 = 11", "x = 11", T),
    (r"x = 1/3 \approx 0.33", "1/3", T),
    (r"5 \geq x", r"x \leq 5", T),
    ("x >= 5", r"x \ge 5", T),
    ("x < 5", "x > 5", F),
    ("-x > -1", "x < 1", T),
    ("x > -1", "x < 1", F),
    ("11a+c", "7 = 11a+c", F),
    (r"x \neq 3", "x != 3", T),
    ("x = z", "x = y", F),
    # expressions
    (r"\frac{x}{7}+\frac{2}{7}", r"\frac{x+2}{7}", T),
    (r"\sec^2(y)", r"\tan^2(y)+1", T),
    ("(+5)(b+2)", "(a+5)(b+2)", F),
    ("x+1", "x+2n+1", F),
    (r"2\cos a \sin b", r"2 \sin b \cos a", T),
    ("-2+4a", "4a-2", T),
    ("(x+1)^2", "x^2+2x+1", T),
    (r"\frac{r\pi}{r+h}", r"\frac{\pi r}{h+r}", T),
    ("2-2p", "2-2p", T),
    ("2+2p", "2-2p", F),
    (r"\frac{1}{3x^{2/3}}", r"\frac{1}{3\sqrt[3]{x}^2}", T),
    # text answers
    (r"\text{Evelyn}", "Evelyn", T),
    ("Evelyn", r"\text{Carla}", F),
    ("odd", r"\text{odd}", T),
    (r"\text{Even}", "even", T),
    ("yes", r"\text{Yes}", T),
    ("no", "yes", F),
    ("5", r"\text{Evelyn}", F),
    ("e", r"\text{e}", T),
    (r"\text{E}", "d", F),
    # thousands separators and decimal commas
    ("1000", "1,000", T),
    ("10000", r"10{,}000", T),
    ("10000", r"10,\!000", T),
    ("7,425,000", "7425000", T),
    ("1 000", "1000", T),
    ("900000000", "900,000,000", T),
    ("32, 349", "32349", F),
    (r"\$16,\!386.20", "16386.20", T),
    ("16386.16", "16386.17", F),  # they differ in the last digit
    ("1,22", "1.22", T),
    # a decimal comma is read only in a prediction, only when the gold is a single value:
    # OlympiadBench golds such as "-3,0" list two answers
    ("-3", "-3,0", F),
    ("-3.0", "-3,0", F),
    ("-3, 0", "-3,0", T),
    ("1.22", "1,22", F),
    ("3.5", "3,5", F),
    ("0,111", "0.111", T),
    ("9999.857142857143", r"10{,}000", F),  # 16 significant digits, off by 0.14
    # scientific notation
    ("4.5e33", r"4.5\times10^{33}", T),
    (r"4.5 \times 10^{33}", "4.5e33", T),
    (r"4.48\times10^{33}", "4.5e33", F),
    ("17000", "1.70e4", T),
    (r"6.02 \cdot 10^{23}", "6.02e23", T),
    (r"3 \times 10^{-3}", "0.003", T),
    ("3000000", "3 million", T),
    # degrees
    (r"90^\circ", "90", T),
    ("90", r"90^{\circ}", T),
    ("45°", "45", T),
    ("30 degrees", "30", T),
    (r"60^\circ", r"90^\circ", F),
    # pi
    ("6.2832", r"2\pi", T),  # 2 pi = 6.2831853; diff 1.5e-5 < 1e-4
    (r"\pi/2", r"\frac{\pi}{2}", T),
    (r"7 \pi", r"7\pi", T),
    (r"\frac94\pi", r"\frac{9}{4}\pi", T),
    ("3.14", r"\pi", F),  # relative error 5e-4
    ("180", r"\pi", F),
    # multiple choice
    ("B", "B", T),
    ("(B)", "B", T),
    (r"\text{(B)}", "B", T),
    ("C", "B", F),
    ("(C) 12", "C", T),
    (r"\mathrm{(D)}", "D", T),
    ("D", "(D)", T),
    ("A", "E", F),
    # leading zeros (AIME answers are zero-padded)
    ("25", "025", T),
    ("025", "25", T),
    ("4", "004", T),
    ("000", "0", T),
    (".5", "0.5", T),
    ("70", "007", F),
    # negative numbers
    ("-5", "-5", T),
    ("5", "-5", F),
    ("−5", "-5", T),
    (r"-\frac{1}{2}", "-0.5", T),
    ("- 3", "-3", T),
    (r"-\frac{40}{153}", r"-\frac{40}{153}", T),
    (r"\frac{40}{153}", r"-\frac{40}{153}", F),
    # GSM8K and OlympiadBench gold formats
    ("18", "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmers' market.\n#### 18", T),
    ("17", "She makes 9 * 2 = $<<9*2=18>>18 every day at the farmers' market.\n#### 18", F),
    (r"\frac{1}{2}", r"$\frac{1}{2}$", T),
    ("3", "$x=3$", T),
    ("(1, 2)", "$(1,2)$", T),
    ("2", r"$\frac{1}{2}$", F),
    ("0.866", r"$\frac{\sqrt{3}}{2}$", T),  # sqrt(3)/2 = 0.8660254; diff 2.5e-5 < 1e-3, 2.9e-5 relative
    (r"\frac{\sqrt{3}}{2}", r"$\frac{\sqrt{3}}{2}$", T),
    # AMC gold answers are floats
    ("27", 27.0, T),
    ("27", "27.0", T),
    ("142", "142.0", T),
    ("27.5", 27.0, F),
    (27, "27", T),
    # nothing to compare
    ("", "5", F),
    (None, "5", F),
    ("5", None, F),
    ("   ", "   ", F),
]


def test_case_table_is_broad() -> None:
    assert len(CASES) >= 150
    assert sum(expected for *_, expected in CASES) >= 40
    assert sum(not expected for *_, expected in CASES) >= 40


@pytest.mark.parametrize("pred, gold, expected", CASES)
def test_is_equivalent(pred, gold, expected: bool) -> None:
    assert is_equivalent(pred, gold, timeout=30) is expected


RESPONSES = [
    (r"Adding, $4+5=9$, so the answer is $\boxed{9}$.", "9", T),
    (r"So $x - p = \boxed{2-2p}$.", "$2-2p$", T),
    (r"Thus $\boxed{14{,}916}$ is our answer.", r"In all, $\boxed{14{,}916}$.", T),
    ("Final Answer: The final answer is $10,455$. I hope it is correct.", "10455", T),
    (r"the answer is $\boxed{\frac{1}{\sqrt{2}}}$", r"\frac{\sqrt{2}}{2}", T),
    ("Janet has 16 - 3 - 4 = 9 eggs.\n#### 9", "9", T),
    ("Answer: C", "C", T),
    ("Checking each choice, the correct option is (B).", "B", T),
    ("so she has 42 apples left.", "42", T),
    (r"The integers are $\boxed{-2}$ and $\boxed{1}$.", "1, -2", T),
    ("\\boxed{5}\n\nProblem:\nNext problem.\n\nSolution: \\boxed{7}", "5", T),
    ("I am not sure how to solve this.", "5", F),
    (r"so the answer is $\boxed{12}$.", "13", F),
    (r"the domain is $\boxed{(-\infty, -3] \cup [2, \infty)}$", "[-3,2]", F),
]


@pytest.mark.parametrize("response, gold, expected", RESPONSES)
def test_grade_full_response(response: str, gold: str, expected: bool) -> None:
    assert grade(response, gold, timeout=30) is expected


def test_grade_many_matches_grade() -> None:
    pairs = [(response, gold) for response, gold, _ in RESPONSES]
    assert grade_many(pairs, processes=2, timeout=30) == [expected for *_, expected in RESPONSES]


def test_numbers_and_strings_never_reach_the_symbolic_step(monkeypatch) -> None:
    def unavailable(*args, **kwargs):
        raise AssertionError("symbolic step used")

    monkeypatch.setattr(worker, "compare", unavailable)
    assert is_equivalent("0.5", r"\frac{1}{2}")
    assert not is_equivalent("17", "18")
    assert is_equivalent(r"\text{(C)}", "C")
    assert not is_equivalent("(1,2)", "(2,1)")


def _symbolic_pair(_: int) -> bool:
    return is_equivalent(r"\frac{x}{7}+\frac{2}{7}", r"\frac{x+2}{7}", timeout=60)


def test_symbolic_step_works_off_the_main_thread() -> None:
    with ThreadPoolExecutor(2) as executor:
        assert list(executor.map(_symbolic_pair, range(3))) == [True] * 3


def test_symbolic_step_works_in_daemonic_pool_workers() -> None:
    with multiprocessing.get_context("fork").Pool(2) as pool:  # pool workers are daemonic
        assert pool.map(_symbolic_pair, range(2)) == [True, True]


def test_timeout_gives_false_within_the_limit() -> None:
    _symbolic_pair(0)  # the worker is running
    for pred, gold in [("(x+1)^{1000}", "x^{1000}+1"), (r"\sum_{k=1}^{10^{9}} k^k", "1")]:
        start = time.monotonic()
        assert not is_equivalent(pred, gold, timeout=1.0)
        assert time.monotonic() - start < 1.0 + worker.GRACE_SECONDS + 0.5


def _bon_pairs() -> tuple[list[tuple[str, str]], list[bool]]:
    path = data_dir() / "bon" / "qwen25math_math_cot_100.jsonl"
    if not path.exists():
        pytest.skip(f"Best-of-N data not found at {path} (set PRIMEKIT_DATA)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = [(response, r["gt"]) for r in records for response in r["response"]]
    labels = [bool(score) for r in records for score in r["score"]]
    return pairs, labels


def test_agreement_with_qwen_labels_on_best_of_n_responses() -> None:
    pairs, labels = _bon_pairs()
    verdicts = grade_many(pairs, timeout=30)
    agreement = sum(v == label for v, label in zip(verdicts, labels)) / len(labels)
    assert len(labels) == 800
    assert agreement >= 0.99
