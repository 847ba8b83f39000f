r"""Code benchmarks for ``prime-eval``: HumanEval, MBPP and LeetCode with PRIME's code prompt, graded
by running each answer's program against the benchmark's tests in the code sandbox.

A code problem is a :class:`~primekit.eval.benchmarks.BenchmarkProblem` like a math one: its
``problem`` is the user question PRIME builds for the benchmark, and its ``answer`` names the tests
(``{"tests": "humaneval", "id": "HumanEval/0"}``) so that sample files stay small; the grader
looks the row up again. pass@1 / pass@k come from the same metrics as math.

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
import gzip
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from primekit.errors import InputError
from primekit.eval.benchmarks import BenchmarkProblem, eurus_system_prompt
from primekit.paths import data_dir

__all__ = ["CODE_BENCHMARKS", "CODE_SUFFIX", "PRIME_CODE_SYSTEM", "is_code_benchmark", "load_code_benchmark",
           "code_messages", "render_code_prompt", "code_answer", "code_suite", "reference_solution", "CodeGrader"]

#: The user-message suffix of every PRIME code prompt.
CODE_SUFFIX = "\n\nWrite Python code to solve the problem. Present the code in \n```python\nYour code\n```\nat the end."
#: ``eval/system_prompt.md`` as PRIME's code scripts read it: the Eurus system prompt with its
#: newlines written as the two characters backslash and n (the file holds no real newline).
PRIME_CODE_SYSTEM = eurus_system_prompt()


@dataclass(frozen=True)
class CodeBenchmark:
    title: str
    relative_path: str
    id_field: str
    question: Callable[[dict[str, Any]], str]
    reference_field: str | None  # reference solution, for check-references


def _humaneval_question(row: dict[str, Any]) -> str:
    match = re.search(rf"def\s+({re.escape(row['entry_point'])}.*?):\s*\n", row["prompt"])
    if match is None:
        raise InputError("no 'def <entry_point>' line in the prompt", field="prompt",
                         path=str(row.get("task_id", "")) or None)
    return (f"Write Python code to solve the task.\nWrite a Python function `{match.group(1)}` to solve the "
            f"following problem: Present code in ```python```\n```python\n{row['prompt']}\n```\n")


def _mbpp_signature(code: str) -> str:
    line = next((line for line in code.split("\n") if line.strip().startswith("def ")), None)
    if line is None:
        raise InputError("the reference code defines no function", field="code")
    # PRIME's expression, quirks included: lstrip("def ") strips characters, not a prefix
    return line.lstrip("def ").replace(" ", "").rstrip(":").strip().replace(",", ", ")


def _mbpp_question(row: dict[str, Any]) -> str:
    from primekit.verifiers.code.formats import _string_list

    description = str(row["prompt"]).split(" https://www.")[0]
    first_test = _string_list(row, "test_list")[0]
    return (f"Write Python code to solve the task.\nWrite a Python function `{_mbpp_signature(row['code'])}` to "
            f"solve the following problem: Present code in ```python and ```\n{description}\n"
            f"The code should pass the following test cases:>>> {first_test}\n\n Let's coding step by step.\n")


CODE_BENCHMARKS: dict[str, CodeBenchmark] = {
    "humaneval": CodeBenchmark("HumanEval", "code/humaneval/HumanEval.jsonl.gz", "task_id", _humaneval_question,
                               "canonical_solution"),
    "mbpp": CodeBenchmark("MBPP", "code/mbpp/new_mbpp.json", "task_id", _mbpp_question, "code"),
    "leetcode": CodeBenchmark("LeetCode", "code/leetcode/leetcode-test.json", "task_id",
                              lambda row: str(row["prompt_sft"]), None),
}


def is_code_benchmark(name: str) -> bool:
    return name in CODE_BENCHMARKS


@lru_cache(maxsize=8)
def _rows(name: str) -> dict[str, dict[str, Any]]:
    """The benchmark's rows by id, read once per process (the grader looks tests up here)."""
    source = CODE_BENCHMARKS[name]
    path = data_dir() / source.relative_path
    if not path.is_file():
        raise InputError(f"benchmark '{name}' is not in the data folder (set PRIMEKIT_DATA)", path=path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise InputError(f"malformed JSON ({error.msg})", path=path, line=error.lineno) from None
    by_id: dict[str, dict[str, Any]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or source.id_field not in row:
            raise InputError("missing", path=path, line=index + 1, field=source.id_field)
        by_id[str(row[source.id_field])] = row
    return by_id


def load_code_benchmark(name: str) -> list[BenchmarkProblem]:
    """The problems of a registered code benchmark."""
    source = CODE_BENCHMARKS[name]
    return [BenchmarkProblem(id=problem_id, problem=source.question(row), benchmark=name,
                             answer=json.dumps({"tests": name, "id": problem_id}),
                             metadata={"reference": row.get(source.reference_field) if source.reference_field else None})
            for problem_id, row in _rows(name).items()]


def code_messages(question: str) -> list[dict[str, str]]:
    """PRIME's chat for a code question."""
    return [{"role": "system", "content": PRIME_CODE_SYSTEM}, {"role": "user", "content": question + CODE_SUFFIX}]


def render_code_prompt(problem: BenchmarkProblem, template: str, tokenizer=None) -> str:
    """The prompt of a code problem: the question and suffix as plain text under ``raw``, PRIME's
    chat (its system prompt, the question and suffix) under any chat template."""
    if template == "raw":
        return problem.problem + CODE_SUFFIX
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise InputError("code benchmarks use a chat prompt, which needs a tokenizer with a chat template; "
                         "use --template raw for a base model")
    return tokenizer.apply_chat_template(code_messages(problem.problem), tokenize=False, add_generation_prompt=True)


def _row_for(gold: str) -> tuple[str, dict[str, Any]]:
    try:
        reference = json.loads(gold)
        name, problem_id = reference["tests"], str(reference["id"])
        return name, _rows(name)[problem_id]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"not a code benchmark answer: {gold[:80]!r}") from None


def code_answer(benchmark: str, problem_id: str, path=None, line: int | None = None) -> str:
    """The answer of a row of model outputs for a code benchmark (``prime-eval grade``): it names
    the problem, whose tests come from the benchmark itself; an unknown id is an error naming the
    file and line."""
    if problem_id not in _rows(benchmark):
        raise InputError(f"no problem '{problem_id}' in {CODE_BENCHMARKS[benchmark].title}", path=path, line=line,
                         field="problem_id")
    return json.dumps({"tests": benchmark, "id": problem_id})


def code_suite(gold: str, code: str):
    """The test suite for ``code`` written for the problem ``gold`` names."""
    from primekit.verifiers.code import humaneval_suite, leetcode_suite, mbpp_suite

    name, row = _row_for(gold)
    build = {"humaneval": humaneval_suite, "mbpp": mbpp_suite, "leetcode": leetcode_suite}[name]
    return build(row, code)


def reference_solution(problem: BenchmarkProblem) -> str | None:
    """The benchmark's own solution of a problem (None for LeetCode, which ships none)."""
    return problem.metadata.get("reference")


class CodeGrader:
    """A ``prime-eval`` grade function for code: (extracted code or None, all tests passed) per
    response; responses run in parallel sandboxes. Use it in a ``with`` block (or ``close()`` it):
    its idle sandboxes live until then."""

    def __init__(self, settings=None, workers: int | None = None) -> None:
        from primekit.verifiers.code import CodeVerifier, SandboxSettings

        # pass/fail is all pass@k needs, so a program's remaining tests are skipped at its first failure
        self.verifier = CodeVerifier(dataclasses.replace(settings or SandboxSettings(), stop_on_failure=True),
                                     workers)

    def __call__(self, responses: Sequence[str], golds: Sequence[str]) -> list[tuple[str | None, bool]]:
        from primekit.verifiers.code import extract_code

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
