"""The published graders (``--grader prime|qwen``): the published code itself, read from the mirrored
repositories at the pinned commits and run in the graders' own environment (``make grader-env``).

Checked on upstream's own examples (parser.py:754-755, grader.py:352-389 of Qwen2.5-Math), on
its steps one by one (strip_string, the multiple-choice re-read, empty golds), and on the 800
best-of-8 responses whose verdicts Qwen's harness shipped (``score``): the ``qwen`` grader gives
each of them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from primekit.cli import dispatch
from primekit.errors import InputError
from primekit.eval import published
from primekit.eval.upstream import upstream_root
from primekit.paths import data_dir


def test_each_benchmark_goes_to_the_rule_its_authors_used():
    assert published.rule_for("prime", "math500").fields == (("script", "math"),)
    assert published.rule_for("prime", "aime2024").fields == (("script", "aime"),)
    assert published.rule_for("prime", "amc").fields == (("script", "amc"),)
    harness = published.rule_for("prime", "olympiadbench")
    assert (harness.kind, harness.repo, harness.folder) == ("qwen-harness", "PRIME-RL/PRIME",
                                                             "eval/Math/Qwen25-Math/evaluation")
    assert published.rule_for("prime", "gsm8k").fields == (("script", "math"),)  # PRIME's general rule
    qwen = published.rule_for("qwen", "gaokao2023en")
    assert (qwen.repo, qwen.fields, qwen.seconds) == ("QwenLM/Qwen2.5-Math", (("data_name", "gaokao2023en"),), 3.0)
    with pytest.raises(InputError):
        published.rule_for("nobody", "math500")


def test_a_missing_environment_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PRIMEKIT_GRADER_PYTHON", str(tmp_path / "none" / "python"))
    with pytest.raises(InputError, match="make grader-env"):
        published.grader_python()


def _environment_or_skip() -> None:
    try:
        published.grader_python()
    except InputError as error:
        pytest.skip(str(error))
    if not upstream_root().is_dir():
        pytest.skip(f"no folder of published repositories at {upstream_root()}")


@pytest.fixture(scope="module")
def qwen_math():
    _environment_or_skip()
    with published.PublishedGrader("qwen", "math500") as grade:
        yield grade


@pytest.mark.parametrize("response, gold, extracted, equal", [
    # grader.py:352-353 and 388-389, upstream's own examples
    ("\\boxed{0.0833333333333333}", "\\frac{1}{12}", "0.0833333333333333", True),
    ("\\boxed{(1,4.5)}", "(1,\\frac{9}{2})", "(1,4.5)", True),
    ("\\boxed{x+1}", "x+2n+1", "x+1", False),
    # strip_string, step by step (parser.py:212-350): \dfrac, a trailing unit in \text, "x=",
    # ^\circ, a TeX thousands separator it keeps, a unit word
    ("\\boxed{\\dfrac{1}{2}}", "\\frac12", "\\frac{1}{2}", True),
    ("\\boxed{3\\text{ cm}}", "3", "3", True),
    ("\\boxed{x=5}", "5", "5", True),
    ("\\boxed{90^\\circ}", "90", "90", True),
    ("\\boxed{10000}", "10{,}000", "10000", False),
    ("The answer is 12 inches", "12", "12", True),
])
def test_qwen_harness_steps_on_upstreams_examples(qwen_math, response, gold, extracted, equal):
    assert qwen_math([response], [gold]) == [(extracted, equal)]


def test_multiple_choice_re_read_and_empty_golds():
    """math_eval.py:359-371: a letter gold re-reads the response with choice_answer_clean
    (upstream's parser.py:755 example: "\\mathrm{(D)\\}1,008,016" reads as D); a gold of letters
    keeps only the letters of the prediction, and the empty gold (gaokao2023en has two) is such a
    gold, so a response without capitals A-E is right there, one with them wrong."""
    _environment_or_skip()
    with published.PublishedGrader("qwen", "gaokao2023en") as grade:
        assert grade(["\\mathrm{(D)\\}1,008,016"], ["D"]) == [("D", True)]
        assert grade(["\\boxed{42} so the answer is (B) here"], ["B"]) == [("B", True)]
        assert grade(["so \\boxed{7}"], [""]) == [("", True)]
        assert grade(["so \\boxed{C}"], [""]) == [("C", False)]
    from primekit.eval.benchmarks import load_benchmark

    assert sum(p.answer == "" for p in load_benchmark("gaokao2023en")) == 2


@pytest.mark.slow
def test_qwen_grader_gives_qwens_own_verdicts_on_the_800_best_of_8(tmp_path, capsys):
    _environment_or_skip()
    source = data_dir() / "bon" / "qwen25math_math_cot_100.jsonl"
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    assert dispatch("prime-eval", ["grade", str(source), "--response_field", "response", "--answer_field", "gt",
                                   "--graders", "qwen,primekit", "--bootstrap_resamples", "10",
                                   "--out", str(tmp_path / "g")]) == 0
    capsys.readouterr()
    labels = {(str(r["idx"]), i): s for r in rows for i, s in enumerate(r["score"])}
    samples = [json.loads(line) for line in (tmp_path / "g" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 800
    assert all(s["correct"] == labels[(s["problem_id"], s["sample_index"])] for s in samples)
    agree = sum(s["verdicts"]["primekit"]["correct"] == s["correct"] for s in samples)
    assert agree >= 799
    table = (tmp_path / "g" / published.DISAGREEMENTS_FILE).read_text()
    assert "| qwen25math_math_cot_100 | 800 |" in table and "`10{,}000`" in table
    summary = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert summary["grader"] == "qwen" and summary["graders"] == ["qwen", "primekit"]
    assert summary["grader_details"]["version"] == "QwenLM/Qwen2.5-Math@a45202b"
    assert "sympy-1.12" in summary["grader_details"]["environment"]
    assert set(summary["benchmarks"]["qwen25math_math_cot_100"]["by_grader"]) == {"qwen", "primekit"}


def test_prime_grader_runs_prime_scripts_rules():
    """PRIME's scripts as they run: AIME's strip of "The final answer is " eats \\pi's letters,
    MATH's does not; math_equal's relative tolerance takes 9999 for 10{,}000."""
    _environment_or_skip()
    with published.PublishedGrader("prime", "aime2024") as aime, published.PublishedGrader("prime", "math500") as math:
        assert aime(["so \\boxed{\\pi}"], ["\\pi"]) == [("\\", False)]
        assert math(["so \\boxed{\\pi}"], ["\\pi"]) == [("\\pi", True)]
        assert math(["so \\boxed{9999}"], ["10{,}000"]) == [("9999", True)]
        assert aime(["the answer is \\boxed{033}"], ["033"]) == [("033", True)]
