r"""Grading the code benchmarks of ``prime-eval`` (HumanEval, MBPP and LeetCode, catalogued in
:mod:`primekit.problems` and prompted by :mod:`primekit.prompts`): each answer's program runs
against the benchmark's tests in the code sandbox. pass@1 / pass@k come from the same statistics
as math.

PRIME's evaluation (PRIME-RL/PRIME @ 18ad596, ``eval/``), setting by setting:

| setting | PRIME | primekit | source |
|---|---|---|---|
| system prompt | ``system_prompt.md`` read verbatim: 414 bytes, literal ``\n`` escapes | the same bytes | eval/system_prompt.md; evaluate_human_eval.py:55 |
| user suffix | "\n\nWrite Python code to solve the problem. Present the code in \n```python\nYour code\n```\nat the end." | same | evaluate_human_eval.py:59, evaluate_mbpp.py:77, evaluate_leetcode.py:74 |
| HumanEval question | "Write Python code to solve the task.\nWrite a Python function `{signature}` to solve the following problem: Present code in ```python```\n```python\n{prompt}\n```\n" | same | evaluate_human_eval.py:49-50 |
| MBPP question | "...`{signature}` to solve the following problem: Present code in ```python and ```\n{description}\nThe code should pass the following test cases:>>> {test_list[0]}\n\n Let's coding step by step.\n" | same, signature quirk included (``lstrip("def ")`` also eats leading d/e/f letters of the name) | evaluate_mbpp.py:58-59, 66-72 |
| LeetCode question | ``prompt_sft`` | same | evaluate_leetcode.py:74 |
| decoding | greedy; 4096 new tokens (8192 LeetCode) | greedy by default; ``--max_new_tokens`` for all benchmarks of a run | evaluate_human_eval.py:23, 92; evaluate_mbpp.py:47, 48; evaluate_leetcode.py:22, 59 |
| code extraction | ``match_code``: last fenced python block with "def ", else the last python block, the same over any fence, else text before the first fence | same (:func:`~primekit.verifiers.code.formats.extract_code`) | evaluate_human_eval.py:65 |
| HumanEval program | ``prompt`` + code, then ``test`` and ``check(entry_point)`` | same | evaluate_human_eval.py:115 |
| MBPP program | drops every unindented line not starting with "def" (imports too), then the asserts | keeps the code whole, adds ``test_imports``, one test per assert | evaluate_mbpp.py:113, 119 |
| LeetCode program | code without ``class Solution:`` is indented into one | same, after a prelude with typing/collections imports and ``ListNode``/``TreeNode`` | evaluate_leetcode.py:88-91 |
| time limit | 3 s per exec (MBPP) | 5 s per test, 60 s per program (``SandboxSettings``) | evaluate_mbpp.py:99 |

PRIME's own tables give no HumanEval/MBPP/LeetCode numbers as text in the repository (only in a
figure), so the leaderboard has no reported code rows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from primekit.problems import code_row
from primekit.verifiers.code import (
    CodeVerifier,
    SandboxSettings,
    extract_code,
    humaneval_suite,
    leetcode_suite,
    mbpp_suite,
)

__all__ = ["code_suite", "CodeGrader"]


def code_suite(gold: str, code: str):
    """The test suite for ``code`` written for the problem ``gold`` names."""
    name, row = code_row(gold)
    build = {"humaneval": humaneval_suite, "mbpp": mbpp_suite, "leetcode": leetcode_suite}[name]
    return build(row, code)


class CodeGrader:
    """A ``prime-eval`` grade function for code: (extracted code or None, all tests passed) per
    response; responses run in parallel sandboxes. Use it in a ``with`` block (or ``close()`` it):
    its idle sandboxes live until then."""

    def __init__(self, settings=None, workers: int | None = None) -> None:
        # pass/fail is all pass@k needs, so a program's remaining tests are skipped at its first failure
        self.verifier = CodeVerifier(dataclasses.replace(settings or SandboxSettings(), stop_on_failure=True),
                                     workers)

    def __call__(self, responses: Sequence[str], golds: Sequence[str]) -> list[tuple[str | None, bool]]:
        codes = [extract_code(response) for response in responses]
        suites = [code_suite(gold, code) if code.strip() else None for gold, code in zip(golds, codes, strict=True)]
        verdicts = self.verifier.verify_many(suites)
        return [(code if code.strip() else None, bool(verdict and verdict.passed))
                for code, verdict in zip(codes, verdicts)]

    def close(self) -> None:
        self.verifier.close()

    def __enter__(self) -> CodeGrader:
        return self

    def __exit__(self, *_) -> None:
        self.close()
