"""Slip localisation on hand-made toy responses (primekit.prm.localisation)."""

from __future__ import annotations

import math

import pytest

from primekit.prm.localisation import SlipCase, localisation, lowest_index, single_slip_step, step_errors

PROMPT = "Compute 3+4-2\n"


@pytest.mark.parametrize("completion, wrong", [
    ("3+4=7\n7-2=5\n\\boxed{5}", []),                 # right
    ("3+4=8\n8-2=6\n\\boxed{6}", [0]),                # slip in step 0, carried to the end
    ("3+4=7\n7-2=4\n\\boxed{4}", [1]),                # slip in the last step
    ("3+4=7\n7-2=5\n\\boxed{6}", [2]),                # the boxed line does not repeat the value
    ("3+4=8\n7-2=5\n\\boxed{5}", [0, 1]),             # not carried: the second line ignores the first
    ("3+5=8\n8-2=6\n\\boxed{6}", [0]),                # an operand miscopied from the prompt
    ("3+4=7\n7+2=9\n\\boxed{9}", [1]),                # the wrong operator
    ("3+4=7\n7-2=5\n\\boxed{5}\n", []),               # a trailing newline is not a step
])
def test_step_errors_of_worked_responses(completion, wrong):
    assert step_errors(PROMPT, completion) == wrong


def test_negative_values_after_a_slip_are_read():
    assert step_errors("Compute 1-1+3\n", "1-1=-1\n-1+3=2\n\\boxed{2}") == [0]


@pytest.mark.parametrize("completion", ["\\boxed{5}", "3+4=7\n\\boxed{7}", "3+4=7\n7-2=5\n5", "3+4=7\n7-2=5\n\\boxed{5}\n1+1=2",
                                        "3+4=7\nseven-2=5\n\\boxed{5}", ""])
def test_responses_that_are_not_worked_solutions_have_no_step_errors(completion):
    assert step_errors(PROMPT, completion) is None
    assert single_slip_step(PROMPT, completion) is None


def test_single_slip_step():
    assert single_slip_step(PROMPT, "3+4=8\n8-2=6\n\\boxed{6}") == 0
    assert single_slip_step(PROMPT, "3+4=7\n7-2=5\n\\boxed{5}") is None   # no slip
    assert single_slip_step(PROMPT, "3+4=8\n7-2=5\n\\boxed{5}") is None   # two wrong lines


def test_lowest_index_takes_the_first_minimum_and_skips_nan():
    assert lowest_index([0.0, -1.0, -1.0]) == 1
    assert lowest_index([math.nan, 2.0, 1.0]) == 2
    with pytest.raises(ValueError):
        lowest_index([])
    with pytest.raises(ValueError):
        lowest_index([math.nan])


def test_localisation_rates_and_chance_levels_by_hand():
    steps = [0, 0, 1, 1, 2]
    # step sums -0.1, -0.3, 0: step 1 lowest (hit); lowest token (-0.5) is in step 1 (hit)
    both = SlipCase(slip_step=1, token_scores=[0.0, -0.1, -0.5, 0.2, 0.0], token_steps=steps)
    # step sums -0.4, -0.3, 0: step 0 lowest (hit); lowest token (-0.3) is in step 1 (miss)
    step_only = SlipCase(slip_step=0, token_scores=[-0.2, -0.2, -0.3, 0.0, 0.0], token_steps=steps)
    # step sums 0, 0.5, -1: the boxed line is blamed (miss at both levels)
    neither = SlipCase(slip_step=0, token_scores=[0.0, 0.0, 0.5, 0.0, -1.0], token_steps=steps)
    result = localisation([both, step_only, neither])
    assert (result.responses, result.step_hits, result.token_hits) == (3, 2, 1)
    assert result.step_rate == pytest.approx(2 / 3) and result.token_rate == pytest.approx(1 / 3)
    assert result.step_chance == pytest.approx(1 / 3)       # three steps each
    assert result.token_chance == pytest.approx(2 / 5)      # the slipped line holds 2 of 5 tokens
    assert result.standard_error(0.5) == pytest.approx(math.sqrt(0.25 / 3))


def test_localisation_of_no_cases_is_nan_and_bad_cases_are_refused():
    empty = localisation([])
    assert empty.responses == 0 and math.isnan(empty.step_rate)
    with pytest.raises(ValueError, match="token scores"):
        SlipCase(slip_step=0, token_scores=[0.0], token_steps=[0, 1])
    with pytest.raises(ValueError, match="outside"):
        SlipCase(slip_step=3, token_scores=[0.0, 0.0], token_steps=[0, 1])
