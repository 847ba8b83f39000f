"""Reranking: a hand check on the shipped Qwen best-of-8 set, the score cache, and resumption."""

from __future__ import annotations

import json

import numpy as np
import pytest

from primekit.bon import rerank as rr
from primekit.bon.data import BonProblem, load_problems
from primekit.bon.scorers import ShippedScores, VoteWeight
from primekit.prm.reading import aggregate
from primekit.errors import InputError
from primekit.paths import data_dir

QWEN_SET = data_dir() / "bon" / "qwen25math_math_cot_100.jsonl"


@pytest.mark.skipif(not QWEN_SET.is_file(), reason="shared data not found (set PRIMEKIT_DATA)")
def test_qwen_best_of_8_by_hand():
    """Four problems of the shipped set at N=8 (all candidates; shipped preds, labels and scores).

    idx 6:  preds 5/16, 3/8, 3/8, 3/4, 3/8, 1/4, 3/16, 5/16; right: the three 3/8.
            majority 3/8 (3 votes) -> 1. Raw-weighted: 3/8 = 0.056+0.363+0.162 = 0.581 beats
            3/4 = -0.527 and 5/16 = -2.688-2.281 -> 1. Best score 0.363 (a 3/8) -> 1. random 3/8.
    idx 17: 6290000 x4 (right) vs 6287000 x4: a tie -> majority 1/2. Weighted: 0.516+0.531+0.547
            +0.531 = 2.125 vs -0.586-0.375-1.148-0.438 = -2.547 -> 1. Best 0.547 (right) -> 1.
    idx 54: only candidate 4 ("25", score -0.187) is right. Majority: "12.5" has 2 votes -> 0.
            Weighted: 12.5 = -1.305-1.531 = -2.836, 25 = -0.187 is the largest total -> 1.
            Best score -0.187 -> 1. random 1/8.
    idx 70: 19 x5 vs 31 x3 (right). Majority 0. Weighted: 31 = 2.109+2.094+1.711 = 5.914 vs
            19 = 0.734+1.258+0.992+1.016+0.922 = 4.922 -> 1. Best 2.109 (a 31) -> 1. random 3/8.
    Means: majority (1 + 0.5 + 0 + 0)/4 = 0.375; weighted, best-of-8 and oracle 1;
           random (3/8 + 4/8 + 1/8 + 3/8)/4 = 0.34375.
    """
    problems = [p for p in load_problems(QWEN_SET) if p.id in {"6", "17", "54", "70"}]
    assert [p.id for p in problems] == ["6", "17", "54", "70"]
    outcomes = rr.problem_outcomes(problems)
    scorer = ShippedScores()
    methods = [*rr.BASELINES, *rr.scorer_methods(scorer, rr.score_problems(problems, scorer, None),
                                                 ["last"])]
    curves = rr.bon_curves(outcomes, methods, [8])
    at_8 = {key: by_n[8].tolist() for key, by_n in curves.items()}
    assert at_8["majority"] == [1.0, 0.5, 0.0, 0.0]
    assert at_8["vote/shipped"] == [1.0, 1.0, 1.0, 1.0]
    assert at_8["bon/shipped/last"] == [1.0, 1.0, 1.0, 1.0]
    assert at_8["oracle"] == [1.0, 1.0, 1.0, 1.0]
    assert np.mean(at_8["random"]) == pytest.approx(0.34375)
    # sigmoid weights instead of raw ones flip idx 70 back to the majority answer 19:
    # 31: s(2.109)+s(2.094)+s(1.711) = 0.892+0.890+0.847 = 2.629;
    # 19: s(0.734)+s(1.258)+s(0.992)+s(1.016)+s(0.922) = 0.676+0.779+0.730+0.734+0.715 = 3.634
    sigmoid_votes = rr.Method("vote/sigmoid", "sigmoid vote", "vote", [
        np.array([VoteWeight("last", "sigmoid").apply(s) for s in p.scores]) for p in problems])
    assert rr.bon_curves(outcomes, [sigmoid_votes], [8])["vote/sigmoid"][8][3] == 0.0


class CountingScorer:
    """A scorer whose "model" counts its calls: step scores are (len(response), -index)."""

    name = "counting"
    vote_weight = VoteWeight("last", "sigmoid")

    def __init__(self, fail_after_batches: int | None = None):
        self.calls: list[list[str]] = []
        self.fail_after_batches = fail_after_batches

    def identity(self):
        return {"kind": "counting"}

    def aggregate(self, step_scores, how):
        return aggregate(step_scores, how, cumulative=False)

    def step_scores(self, queries, responses):
        if self.fail_after_batches is not None and len(self.calls) >= self.fail_after_batches:
            raise KeyboardInterrupt  # the run is killed mid-scoring
        self.calls.append(list(responses))
        return [[float(len(r)), -1.0] for r in responses]


def _problems(count: int = 3) -> list[BonProblem]:
    return [BonProblem(id=f"p{i}", problem=f"q{i}", answer="1",
                       candidates=["a" * (i + 1), "bbbb" * (i + 1), "c", "dd"],
                       preds=["1", "2", "1", "3"], correct=[True, False, True, False])
            for i in range(count)]


def test_cache_serves_a_rerun_without_calling_the_model(tmp_path):
    problems = _problems()
    path = tmp_path / "scores.jsonl"
    first = CountingScorer()
    scores = rr.score_problems(problems, first, rr.ScoreCache(path, first.identity()), batch_size=5)
    assert sum(len(c) for c in first.calls) == 12
    again = CountingScorer()
    cached = rr.score_problems(problems, again, rr.ScoreCache(path, again.identity()), batch_size=5)
    assert again.calls == [] and cached == scores
    # another aggregation and another N reuse the same step scores
    outcomes = rr.problem_outcomes(problems)
    for how in ("min_step", "min_q", "last", "mean", "sum_q"):
        rr.bon_curves(outcomes, rr.scorer_methods(again, cached, [how]), [1, 2, 4])
    assert again.calls == []


def test_killed_scoring_resumes_from_the_cache(tmp_path):
    problems = _problems()
    path = tmp_path / "scores.jsonl"
    killed = CountingScorer(fail_after_batches=2)
    with pytest.raises(KeyboardInterrupt):
        rr.score_problems(problems, killed, rr.ScoreCache(path, killed.identity()), batch_size=5)
    kept = sum(1 for line in path.read_text().splitlines() if '"steps"' in line)
    assert kept == 10  # two batches of 5 reached the disk
    resumed = CountingScorer()
    scores = rr.score_problems(problems, resumed, rr.ScoreCache(path, resumed.identity()), batch_size=5)
    assert sum(len(c) for c in resumed.calls) == 2  # only the 12 - 10 missing candidates
    assert scores == rr.score_problems(problems, CountingScorer(), None)


def test_candidates_reach_the_model_longest_first(tmp_path):
    scorer = CountingScorer()
    rr.score_problems(_problems(), scorer, None, batch_size=100)
    lengths = [len(r) for r in scorer.calls[0]]
    assert lengths == sorted(lengths, reverse=True)


def test_cache_of_another_setting_is_refused(tmp_path):
    path = tmp_path / "scores.jsonl"
    rr.ScoreCache(path, {"kind": "a", "beta": 0.05})
    with pytest.raises(InputError):
        rr.ScoreCache(path, {"kind": "a", "beta": 0.1})


def test_cache_path_is_next_to_the_input_and_keyed_by_identity(tmp_path):
    data = tmp_path / "cands.jsonl"
    one = rr.default_cache_path(data, "implicit_prm", {"beta": 0.05})
    assert one.parent == tmp_path / "cands.jsonl.bon-cache"
    assert one != rr.default_cache_path(data, "implicit_prm", {"beta": 0.1})


def test_edited_candidate_is_rescored(tmp_path):
    problems = _problems(1)
    path = tmp_path / "scores.jsonl"
    rr.score_problems(problems, CountingScorer(), rr.ScoreCache(path, {"kind": "counting"}))
    problems[0].candidates[2] = "changed"
    scorer = CountingScorer()
    rr.score_problems(problems, scorer, rr.ScoreCache(path, {"kind": "counting"}))
    assert scorer.calls == [["changed"]]


def test_bon_metrics_for_the_eval_runner():
    # per problem: candidates a.. (right, len i+1), bbbb.. (wrong, longest), c (right), dd (wrong);
    # step scores (len, -1): "sum_q" ranks the longest first -> the wrong "bbbb.." at N=4, and
    # "min_q" is -1 for everyone -> a 4-way tie, half of it right. The old name "min" still works.
    problems = _problems()
    got = rr.bon_metrics(problems, CountingScorer(), 4, aggregate="sum_q")
    assert got["bon@4"]["value"] == 0.0
    assert rr.bon_metrics(problems, CountingScorer(), 4, aggregate="min_q")["bon@4"]["value"] == 0.5
    assert rr.bon_metrics(problems, CountingScorer(), 4, aggregate="min")["bon@4"]["value"] == 0.5
    assert set(got) == {"bon@4", "weighted_maj@4"}
    assert json.loads(json.dumps(got)) == got


def test_a_candidate_without_text_is_a_one_line_error():
    problems = _problems(1)
    problems[0].candidates[1] = " \n"
    with pytest.raises(InputError, match=r"field 'candidates\[1\]': candidate 1 of problem 'p0' has no text"):
        rr.score_problems(problems, CountingScorer(), None)
