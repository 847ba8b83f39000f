"""Test formats of the code verifier: code extraction, output comparison, APPS / Eurus JSON (stdin and
fn_name), HumanEval, MBPP, LeetCode, and the one-line errors for bad test data."""

from __future__ import annotations

import dataclasses
import gzip
import json
import time

import pytest

from primekit.paths import data_dir
from primekit.verifiers.code import (
    CodeVerifier,
    SandboxSettings,
    SandboxUnavailable,
    TestFormatError,
    apps_suite,
    check_sandbox,
    extract_code,
    extract_program,
    humaneval_suite,
    leetcode_suite,
    mbpp_suite,
    run_suite,
)
from primekit.verifiers.code.compare import call_result_matches, stdout_matches
from primekit.verifiers.code.formats import _leetcode_tests, leetcode_solution

CODE = data_dir() / "code"


@pytest.fixture(scope="module")
def settings() -> SandboxSettings:
    settings = SandboxSettings(test_timeout=2.0, program_timeout=10.0)
    try:
        check_sandbox(settings)
    except SandboxUnavailable as error:
        pytest.skip(str(error))
    return settings


# ------------------------------------------------------------------------------------------------
# pure parts


def test_extract_program_takes_the_last_python_block_like_prime():
    response = "Plan.\n```python\nprint(1)\n```\nBetter:\n```python\nprint(2)\n```\nDone."
    assert extract_program(response) == "\nprint(2)\n"
    assert extract_program("print(3)\n```\nnotes") == "print(3)\n"  # no python block: up to the fence
    assert extract_program("") == ""


def test_extract_code_prefers_the_last_block_that_defines_a_function():
    response = "```python\ndef f():\n    return 1\n```\nUsage:\n```python\nprint(f())\n```"
    assert extract_code(response) == "\ndef f():\n    return 1\n"
    assert extract_code("```\ndef g(): pass\n```") == "\ndef g(): pass\n"
    assert extract_code("```python\nx = 1\n```") == "\nx = 1\n"
    assert extract_code("def h(): pass\n```python") == "def h(): pass\n"


@pytest.mark.parametrize("actual, expected, same", [
    ("3\n", "3", True),
    ("  1 2  \n\n3\n", "1 2\n3", True),  # trailing spaces and blank lines
    ("1 2\n", "1\n2\n", True),  # tokens, whatever the layout
    ("0.3333333\n", "0.33333333", True),  # numbers to 1e-5 relative
    ("0.33\n", "0.3333333", False),
    ("YES", "yes", False),
    ("1 2 3", "1 2", False),
    ("", "", True),
    ("", "0", False),
    ("nan", "nan", True),
    ("inf", "1e309", False),
])
def test_stdout_comparison(actual, expected, same):
    assert stdout_matches(actual, expected) is same


def test_call_result_comparison_accepts_the_apps_list_wrapping():
    assert call_result_matches([1, 2], [1, 2])
    assert call_result_matches(5, [5])  # APPS stores a function's result as [result]
    assert not call_result_matches([5], 5)
    assert not call_result_matches("5", 5)


@pytest.mark.parametrize("cases, message", [
    ("{not json", "malformed JSON test cases"),
    ("[1, 2]", "must be a JSON object"),
    ({"inputs": ["1"]}, "need 'inputs' and 'outputs' lists"),
    ({"inputs": ["1", "2"], "outputs": ["1"]}, "2 inputs but 1 outputs"),
    ({"inputs": [], "outputs": []}, "no test cases"),
    ({"inputs": ["1"], "outputs": ["1"], "fn_name": "not a name"}, "fn_name must be a Python identifier"),
    ({"inputs": ["{oops"], "outputs": ["1"], "fn_name": "f"}, "test 0: an input line is not JSON"),
    ({"inputs": ["1"], "outputs": ["{oops"], "fn_name": "f"}, "test 0: expected output is not JSON"),
    ({"inputs": [3], "outputs": ["1"]}, "test 0: input must be text"),
])
def test_bad_test_cases_are_one_line_errors(cases, message):
    with pytest.raises(TestFormatError) as caught:
        apps_suite("print(1)", cases, path="rows.jsonl", line=7)
    text = str(caught.value)
    assert "\n" not in text and message in text and text.startswith("rows.jsonl:7: field 'test_cases'")


def test_apps_suites_take_text_or_line_lists_and_json_or_list_arguments():
    stdio = apps_suite("print(1)", json.dumps({"inputs": [["1", "2"]], "outputs": [["3", "4"]]}))
    assert stdio.mode == "stdio" and stdio.tests == ({"input": "1\n2"},) and stdio.expected == ("3\n4",)
    call = apps_suite("def f(a, b): pass", {"inputs": ["[1, 2]\n\"x\"\n", [1, 2]], "outputs": ["[3]", [3]],
                                            "fn_name": "f"})
    assert call.mode == "call" and call.tests == ({"args": [[1, 2], "x"]}, {"args": [1, 2]})
    assert call.expected == ([3], [3]) and not call.solution_class
    assert apps_suite("class Solution:\n    def f(self): pass", {"inputs": ["1"], "outputs": ["1"],
                                                                "fn_name": "f"}).solution_class


def test_leetcode_tests_are_cut_after_each_assert():
    script = "\nsol = S()\n\nx = 1\nassert sol.f(x) == 1\n\nx = 2\nassert sol.f(\n    x) == 2\ny = 3\n"
    assert _leetcode_tests(script) == ["\nsol = S()\n\nx = 1\nassert sol.f(x) == 1\n",
                                       "\nx = 2\nassert sol.f(\n    x) == 2\n", "y = 3\n"]
    assert leetcode_solution("def f(self):\n    return 1\n").startswith("class Solution:\n    def f(self):")


# ------------------------------------------------------------------------------------------------
# running


def test_stdin_programs(settings):
    cases = {"inputs": ["2\n3 4\n", "1\n5\n"], "outputs": ["7\n", "5\n"]}
    good = "input()\nprint(sum(map(int, input().split())))\n"
    assert run_suite(apps_suite(good, cases), settings).passed
    # the prelude gives the star imports PRIME's checker gives: gcd, reduce and stdin need no import
    prelude = "input()\nprint(reduce(lambda a, b: a + b, map(int, stdin.readline().split())) + gcd(0, 0))\n"
    assert run_suite(apps_suite(prelude, cases), settings).passed
    main_guard = "def main():\n    input()\n    print(sum(map(int, input().split())))\n" \
                 "if __name__ == '__main__':\n    main()\n"
    assert run_suite(apps_suite(main_guard, cases), settings).passed
    wrong = run_suite(apps_suite("input()\nprint(7)\n", cases), settings)
    assert [t.status for t in wrong.tests] == ["passed", "wrong_answer"]
    assert wrong.pass_fraction() == 0.5 and "expected '5" in wrong.tests[1].detail


def test_fn_name_programs(settings):
    cases = {"inputs": ["[3, 1, 2]", "[]"], "outputs": ["[1, 2, 3]", "[]"], "fn_name": "sort_it"}
    assert run_suite(apps_suite("def sort_it(xs):\n    return sorted(xs)\n", cases), settings).passed
    method = "class Solution:\n    def sort_it(self, xs):\n        return tuple(sorted(xs))\n"
    assert run_suite(apps_suite(method, cases), settings).passed  # tuples compare as lists
    missing = run_suite(apps_suite("def other(xs):\n    return xs\n", cases), settings)
    assert not missing.passed and missing.error == "program defines no function 'sort_it'"
    cheat = "class Always:\n    def __eq__(self, other):\n        return True\n" \
            "def sort_it(xs):\n    return Always()\n"
    cheated = run_suite(apps_suite(cheat, cases), settings)
    assert not cheated.passed and "not plain data" in cheated.tests[0].detail


def test_program_level_errors_are_one_line(settings):
    cases = {"inputs": ["1\n"], "outputs": ["1\n"]}
    syntax = run_suite(apps_suite("def broken(:\n", cases), settings)
    assert syntax.error.startswith("the program does not compile: SyntaxError") and "\n" not in syntax.error
    empty = run_suite(humaneval_suite({"entry_point": "f", "prompt": "", "test": "x"}, "  \n"), settings)
    assert empty.error.startswith("no program to run")


def test_stop_on_failure_skips_the_remaining_tests(settings):
    settings = SandboxSettings(test_timeout=1.0, program_timeout=20.0, stop_on_failure=True)
    cases = {"inputs": [f"{i}\n" for i in range(8)], "outputs": ["9\n"] + [f"{i}\n" for i in range(1, 8)]}
    with CodeVerifier(settings, workers=1) as verifier:
        verdict = verifier.verify(apps_suite("print(input())\n", cases))
        assert verdict.tests[0].status == "wrong_answer"
        assert {t.status for t in verdict.tests[1:]} <= {"not_run", "passed"}
        assert sum(t.status == "not_run" for t in verdict.tests) >= 6
        started = time.monotonic()
        looping = verifier.verify(apps_suite("while True:\n    pass\n", cases))
        assert looping.tests[0].status == "timeout" and time.monotonic() - started < 3.0  # not 8 time limits
        assert len(verifier._idle) == 1  # the harness skipped the rest and ended cleanly: sandbox kept


def _humaneval() -> list[dict]:
    with gzip.open(CODE / "humaneval" / "HumanEval.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def test_humaneval_canonical_solutions_pass_and_a_wrong_one_fails(settings):
    problems = _humaneval()[:6]
    for problem in problems:
        verdict = run_suite(humaneval_suite(problem, problem["canonical_solution"]), settings)
        assert verdict.passed, (problem["task_id"], verdict.summary())
    # a whole function written by a chat model replaces the stub of the prompt
    wrong = "\ndef has_close_elements(numbers, threshold):\n    return False\n"
    verdict = run_suite(humaneval_suite(problems[0], wrong), settings)
    assert verdict.tests[0].status == "wrong_answer" and "assertion failed" in verdict.tests[0].detail


def test_mbpp_reference_code_passes_with_one_test_per_assert(settings):
    problems = json.loads((CODE / "mbpp" / "new_mbpp.json").read_text())[:5]
    for problem in problems:
        suite = mbpp_suite(problem, problem["code"])
        assert len(suite.tests) == len(problem["test_list"])
        assert run_suite(suite, settings).passed, problem["task_id"]
    half_right = "def similar_elements(a, b):\n    return (4, 5)\n"
    statuses = [t.status for t in run_suite(mbpp_suite(problems[0], half_right), settings).tests]
    # each assert is a test of its own: a failing one does not stop the next
    assert statuses == ["passed", "wrong_answer", "wrong_answer"]
    stopping = dataclasses.replace(settings, stop_on_failure=True)
    statuses = [t.status for t in run_suite(mbpp_suite(problems[0], half_right), stopping).tests]
    assert statuses == ["passed", "wrong_answer", "not_run"]


def test_leetcode_solutions_with_and_without_list_nodes(settings):
    problems = {json.loads(line)["task_id"]: json.loads(line)
                for line in (CODE / "leetcode" / "leetcode-test.json").read_text().splitlines() if line.strip()}
    pushes = problems["weekly-contest-381-minimum-number-of-pushes-to-type-word-i"]
    right = ("class Solution:\n    def minimumPushes(self, word: str) -> int:\n"
             "        return sum(i // 8 + 1 for i in range(len(word)))\n")
    verdict = run_suite(leetcode_suite(pushes, right), settings)
    assert verdict.passed and len(verdict.tests) > 5
    double = problems["weekly-contest-358-double-a-number-represented-as-a-linked-list"]
    body = ("def doubleIt(self, head: Optional[ListNode]) -> Optional[ListNode]:\n    digits = []\n"
            "    while head:\n        digits.append(head.val)\n        head = head.next\n"
            "    value = str(2 * int(''.join(map(str, digits))))\n    node = None\n"
            "    for ch in reversed(value):\n        node = ListNode(int(ch), node)\n    return node\n")
    assert run_suite(leetcode_suite(double, body), settings).passed  # no class: wrapped like PRIME does
    wrong = run_suite(leetcode_suite(pushes, right.replace("// 8", "// 9")), settings)
    assert not wrong.passed and wrong.passed_count >= 1


@pytest.mark.parametrize("problem, message", [
    ({"prompt": "def f():\n", "test": "", "task_id": "x"}, "field 'entry_point'"),
    ({"test_imports": [], "test_list": "not a list", "task_id": 1}, "field 'test_list'"),
])
def test_benchmark_rows_missing_fields_are_one_line_errors(problem, message):
    build = humaneval_suite if "prompt" in problem else mbpp_suite
    with pytest.raises(TestFormatError) as caught:
        build(problem, "pass")
    assert message in str(caught.value) and "\n" not in str(caught.value)
