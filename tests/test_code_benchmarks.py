"""Code benchmarks in prime-eval: PRIME's prompts (checked against the published files when a copy
is at hand), grading in the sandbox, a run end to end with canned answers, the leaderboard, and
check-references."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from primekit import toy
from primekit.cli import dispatch
from primekit.eval import code_benchmarks as cb
from primekit.eval import commands
from primekit.eval.benchmarks import load_benchmark, render_prompt
from primekit.errors import InputError
from primekit.eval.protocols import PRIME_COMMIT, PRIME_REPO
from primekit.verifiers.code import SandboxSettings, SandboxUnavailable, check_sandbox
from test_code_sandbox import wait_for_no_sandbox_processes
from upstream import require_upstream_file

@pytest.fixture(scope="module")
def sandbox():
    try:
        check_sandbox(SandboxSettings())
    except SandboxUnavailable as error:
        pytest.skip(str(error))


def prime_file(path: str) -> str:
    return require_upstream_file(PRIME_REPO, path, PRIME_COMMIT)


def test_benchmarks_load_with_their_sizes():
    sizes = {name: len(load_benchmark(name)) for name in cb.CODE_BENCHMARKS}
    assert sizes == {"humaneval": 164, "mbpp": 399, "leetcode": 180}
    first = load_benchmark("humaneval", limit=2)
    assert [p.id for p in first] == ["HumanEval/0", "HumanEval/1"]
    assert json.loads(first[0].answer) == {"tests": "humaneval", "id": "HumanEval/0"}


def test_prime_code_questions_by_hand():
    he = load_benchmark("humaneval", limit=1)[0]
    assert he.problem.startswith("Write Python code to solve the task.\nWrite a Python function "
                                 "`has_close_elements(numbers: List[float], threshold: float) -> bool` to solve the "
                                 "following problem: Present code in ```python```\n```python\nfrom typing import List")
    mbpp = {p.id: p for p in load_benchmark("mbpp")}
    assert "`similar_elements(test_tup1, test_tup2)`" in mbpp["2"].problem
    assert mbpp["2"].problem.endswith("The code should pass the following test cases:>>> assert set(similar_elements("
                                      "(3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n\n Let's coding step by step.\n")
    # PRIME strips the characters d, e, f and space from the left of "def name(...)": names that
    # start with those letters lose them in the published prompts, and here too
    find = next(p for p in mbpp.values() if re.search(r"`ind_", p.problem))
    assert find is not None
    leet = load_benchmark("leetcode", limit=1)[0]
    assert leet.problem.startswith("You are given a string word containing distinct lowercase English letters.")


def test_system_prompt_and_suffix_match_the_published_files():
    assert prime_file("eval/system_prompt.md") == cb.PRIME_CODE_SYSTEM
    for path in ("eval/Coding/human_eval/evaluate_human_eval.py", "eval/Coding/mbpp/evaluate_mbpp.py",
                 "eval/Coding/leetcode/evaluate_leetcode.py"):
        source = prime_file(path)
        assert repr(cb.CODE_SUFFIX)[1:-1].replace("'", "") in source.replace("\\'", ""), path


def test_source_table_cites_lines_that_hold_the_settings():
    cited = {"eval/Coding/human_eval/evaluate_human_eval.py": {
                 23: '"--temperature", type=float, default=0.0', 49: "Write Python code to solve the task.",
                 50: "Present code in ```python```", 55: 'open("system_prompt.md")',
                 59: "Write Python code to solve the problem.", 65: "def match_code(s):", 92: "max_tokens=4096",
                 115: 'x["prompt"] + x["completion"]'},
             "eval/Coding/mbpp/evaluate_mbpp.py": {
                 47: "max_tokens=4096", 48: "temperature=0.0", 58: 'startswith("def ")', 59: 'lstrip("def ")',
                 66: 'split(" https://www.")', 72: "Let's coding step by step.",
                 77: "Write Python code to solve the problem.", 99: "time_limit(3)",
                 113: 'not c.startswith("def")', 119: 'example["test_list"]'},
             "eval/Coding/leetcode/evaluate_leetcode.py": {
                 22: '"--temperature", type=float, default=0.', 59: "max_tokens=8192", 74: 'example["prompt_sft"]',
                 88: '"class Solution:" not in', 91: '"class Solution:\\n"'}}
    for path, lines in cited.items():
        source = prime_file(path).splitlines()
        for number, text in lines.items():
            assert text in source[number - 1], (path, number)
            assert f"{Path(path).name}:{number}" in cb.__doc__ or f"{Path(path).name}:{number}-" in cb.__doc__ \
                or re.search(rf"{re.escape(Path(path).name)}:[\d, -]*\b{number}\b", cb.__doc__), (path, number)


def test_prompts_render_prime_chat():
    tokenizer = toy.build_tokenizer()  # its chat template joins the messages' contents
    problem = load_benchmark("leetcode", limit=1)[0]
    text = render_prompt(problem, "auto", tokenizer)
    assert text == cb.PRIME_CODE_SYSTEM + problem.problem + cb.CODE_SUFFIX
    assert render_prompt(problem, "raw") == problem.problem + cb.CODE_SUFFIX


def fenced(code: str) -> str:
    return f"Let me think.\n```python\n{code}\n```\nDone."


def test_code_grader_runs_answers_in_the_sandbox(sandbox):
    problems = load_benchmark("humaneval", limit=2)
    full = problems[0].metadata["reference"]
    with cb.CodeGrader(SandboxSettings(test_timeout=3.0)) as grade:
        graded = grade([fenced(problems[0].problem.split("```python\n")[1].split("```")[0] + full),
                        fenced("def has_close_elements(numbers, threshold):\n    return True\n"), "no code at all"],
                       [problems[0].answer] * 3)
    assert [correct for _, correct in graded] == [True, False, False]
    assert graded[2] == ("no code at all", False)  # PRIME: without a fence the text itself is the code


def test_run_end_to_end_on_humaneval_with_canned_answers(sandbox, tmp_path, monkeypatch):
    model = tmp_path / "model"
    toy.random_model(seed=0).save_pretrained(model)
    toy.build_tokenizer().save_pretrained(model)
    problems = load_benchmark("humaneval", limit=3)
    tokenizer = toy.build_tokenizer()
    canned = {render_prompt(p, "auto", tokenizer): fenced(p.metadata["reference"]) for p in problems}
    canned[render_prompt(problems[2], "auto", tokenizer)] = fenced("    return None")  # wrong

    class Canned:
        def generate(self, prompts, spec):
            from primekit.eval.generate import Completion

            return [[Completion(canned[p], True, 10)] for p in prompts]

    monkeypatch.setattr(commands, "make_generator", lambda *a, **k: Canned())
    out = tmp_path / "run"
    assert dispatch("prime-eval", ["run", "--model", str(model), "--benchmarks", "humaneval", "--limit", "3",
                                   "--out", str(out)]) == 0
    assert wait_for_no_sandbox_processes() == []  # the run ended its sandboxes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmarks"]["humaneval"]["metrics"]["pass@1"]["value"] == pytest.approx(2 / 3)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["correct"] for s in sorted(samples, key=lambda s: s["problem_id"])] == [True, True, False]
    assert dispatch("prime-eval", ["leaderboard", str(out), "--out", str(tmp_path / "report")]) == 0
    board = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "HumanEval" in board and "66.7" in board


def test_check_references_passes_and_lists_failures_by_id(sandbox, monkeypatch, capsys):
    assert dispatch("prime-eval", ["check-references", "--benchmarks", "humaneval,mbpp,leetcode,math500",
                                   "--limit", "4"]) == 0
    printed = capsys.readouterr().out
    assert "100.0%" in printed and "ships no reference" in printed
    rows = dict(cb._rows("humaneval"))
    broken = dict(rows["HumanEval/1"], canonical_solution="    return []\n")
    monkeypatch.setattr(cb, "_rows", lambda name: {**rows, "HumanEval/1": broken} if name == "humaneval"
                        else cb._rows.__wrapped__(name))
    assert dispatch("prime-eval", ["check-references", "--benchmarks", "humaneval", "--limit", "3"]) == 1
    printed = capsys.readouterr().out
    assert "humaneval HumanEval/1: passed 0/1" in printed and "66.7%" in printed
    assert dispatch("prime-eval", ["check-references", "--benchmarks", "nope"]) == 2


def _forgeries(problem_benchmark: str, problem) -> list[str]:
    """Fenced answers of every kind in test_code_forgery, written for ``problem``."""
    from test_code_forgery import RETURNS, SETUPS, forged

    from primekit.verifiers.code import mbpp_suite

    if problem_benchmark == "humaneval":
        name = problem["entry_point"]
    elif problem_benchmark == "mbpp":
        name = mbpp_suite(problem, "pass").targets[0]
    else:
        name = ""
    return [fenced(forged(setup, returns, name, problem_benchmark == "leetcode"))
            for setup in SETUPS for returns in RETURNS]


@pytest.mark.slow
def test_grade_grades_code_rows_from_the_benchmarks_tests(sandbox, tmp_path):
    """``prime-eval grade`` on rows that name a code problem by id: the tests come from the
    benchmark; references pass, forged answers of every kind pass nothing."""
    rows = []
    for name in ("humaneval", "mbpp", "leetcode"):
        for problem_id, problem in list(cb._rows(name).items())[:2]:
            reference = problem.get(cb.CODE_BENCHMARKS[name].reference_field or "", None)
            if name == "humaneval":
                reference = problem["prompt"] + reference
            responses = ([fenced(reference)] if reference else []) + _forgeries(name, problem)
            rows.append({"benchmark": name, "problem_id": problem_id, "responses": responses})
    path = tmp_path / "outputs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "graded"
    assert dispatch("prime-eval", ["grade", str(path), "--response_field", "responses", "--out", str(out)]) == 0
    assert wait_for_no_sandbox_processes() == []
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    passed = sorted((s["benchmark"], s["problem_id"]) for s in samples if s["correct"])
    references = sorted((r["benchmark"], r["problem_id"]) for r in rows if r["benchmark"] != "leetcode")
    assert passed == references  # each reference passes; no forged answer does
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"benchmark": "mbpp", "problem_id": "no-such-id", "response": "x"}) + "\n")
    with pytest.raises(InputError, match="bad.jsonl:1: field 'problem_id': no problem 'no-such-id' in MBPP"):
        commands.grade([str(bad), "--out", str(tmp_path / "bad")])


@pytest.mark.slow
def test_run_passes_no_forged_answer(sandbox, tmp_path, monkeypatch):
    """``prime-eval run`` grades what a model answers: forged answers score 0 on all three benchmarks."""
    model = tmp_path / "model"
    toy.random_model(seed=0).save_pretrained(model)
    toy.build_tokenizer().save_pretrained(model)
    tokenizer = toy.build_tokenizer()
    canned = {}
    for name in ("humaneval", "mbpp", "leetcode"):
        for problem in load_benchmark(name, limit=2):
            row = cb._rows(name)[problem.id]
            canned[render_prompt(problem, "auto", tokenizer)] = _forgeries(name, row)

    class Canned:
        def generate(self, prompts, spec):
            from primekit.eval.generate import Completion

            return [[Completion(answer, True, 10) for answer in canned[p]] for p in prompts]

    monkeypatch.setattr(commands, "make_generator", lambda *a, **k: Canned())
    out = tmp_path / "run"
    kinds = len(next(iter(canned.values())))
    assert dispatch("prime-eval", ["run", "--model", str(model), "--benchmarks", "humaneval,mbpp,leetcode",
                                   "--limit", "2", "--n", str(kinds), "--temperature", "0.7",
                                   "--out", str(out)]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 * kinds and not any(s["correct"] for s in samples)
