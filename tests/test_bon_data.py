"""Candidate files: the standard layout, Qwen's RM@N layout, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from primekit.bon.data import load_problems, parse_record, problems_from_samples
from primekit.errors import InputError
from primekit.paths import data_dir

QWEN_SET = data_dir() / "bon" / "qwen25math_math_cot_100.jsonl"


def _write(tmp_path, *records) -> str:
    path = tmp_path / "cands.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_standard_layout_round_trips(tmp_path):
    record = {"id": 7, "problem": "1+1?", "answer": 2.0, "candidates": ["\\boxed{2}", "3"],
              "preds": ["2", None], "correct": [True, False], "scores": [0.5, -1]}
    problem = load_problems(_write(tmp_path, record))[0]
    assert (problem.id, problem.answer, problem.scores) == ("7", "2", [0.5, -1.0])  # 2.0 as the benchmarks write it
    assert problem.prompt is None
    assert parse_record(problem.to_record()) == problem


def test_qwen_layout_is_detected():
    record = {"idx": 3, "question": "Q", "gt": "4", "code": ["a", "b"], "pred": ["4", "5"],
              "score": [True, False], "pred_score": [[3.5], [-1.25]], "answer": "4"}
    problem = parse_record(record)
    assert (problem.id, problem.problem, problem.answer) == ("3", "Q", "4")
    assert problem.candidates == ["a", "b"] and problem.preds == ["4", "5"]
    assert problem.correct == [True, False] and problem.scores == [3.5, -1.25]


@pytest.mark.skipif(not QWEN_SET.is_file(), reason="shared data not found (set PRIMEKIT_DATA)")
def test_shipped_qwen_set_loads():
    problems = load_problems(QWEN_SET)
    assert len(problems) == 100 and all(len(p.candidates) == 8 for p in problems)
    # 0.91 mean correctness (data README)
    assert sum(sum(p.correct) for p in problems) / 800 == pytest.approx(0.91, abs=0.005)


@pytest.mark.parametrize("record, message", [
    ({"problem": "q", "candidates": []}, "field 'candidates': empty list"),
    ({"problem": "q", "candidates": "abc"}, "field 'candidates': expected list, got str"),
    ({"problem": "q", "candidates": ["a", 3]}, "field 'candidates[1]': expected str, got int"),
    ({"problem": "q"}, "field 'candidates': missing"),
    ({"candidates": ["a"]}, "field 'problem': missing"),
    ({"problem": "q", "candidates": ["a"], "correct": [True, False]},
     "field 'correct': has 2 entries for 1 candidates"),
    ({"problem": "q", "candidates": ["a"], "scores": [True]}, "field 'scores[0]': expected number, got bool"),
    ({"question": "q", "gt": "1", "code": ["a"], "pred_score": [[1, 2]]},
     "field 'pred_score[0]': expected a one-element list"),
])
def test_bad_records_name_file_line_and_field(tmp_path, record, message):
    path = _write(tmp_path, {"problem": "ok", "candidates": ["x"]}, record)
    with pytest.raises(InputError) as err:
        load_problems(path)
    assert str(err.value).startswith(f"{path}:2: ")
    assert message in str(err.value)


def test_duplicate_ids_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="duplicate id 'a'"):
        load_problems(_write(tmp_path, {"id": "a", "problem": "q", "candidates": ["x"]},
                             {"id": "a", "problem": "q", "candidates": ["y"]}))
    with pytest.raises(InputError, match="no problems"):
        load_problems(_write(tmp_path))


def test_eval_run_samples_become_problems():
    records = [{"benchmark": "toy", "problem_id": pid, "sample_index": index, "prompt": f"P{pid}",
                "completion": f"{pid}-{index}", "answer": "5", "pred": str(index),
                "correct": index == 1}
               for pid in ("a", "b") for index in (2, 0, 1)]  # out of order, as a resumed run writes
    problems = problems_from_samples(records, n=2, problem_texts={"a": "question a"})
    assert [p.id for p in problems] == ["a", "b"]
    assert problems[0].candidates == ["a-0", "a-1"] and problems[0].correct == [False, True]
    assert (problems[0].problem, problems[1].problem, problems[1].prompt) == ("question a", "Pb", "Pb")
    with pytest.raises(InputError, match="fewer than 4"):
        problems_from_samples(records, n=4)
