"""Test formats: how a response and a problem's tests become a :class:`TestSuite`.

| format | program | tests | passes when |
|---|---|---|---|
| APPS / Eurus-2-RL-Data (``{"inputs", "outputs"}``) | import prelude + the last ```python block | one per input: stdin → stdout | output matches (``compare.stdout_matches``) |
| the same with ``fn_name`` | prelude + code | one call per input (a line of JSON per argument) | return value matches (``compare.call_result_matches``) |
| HumanEval | ``prompt`` + completion | ``test`` + ``check(entry_point)`` | the check finishes |
| MBPP | code + ``test_imports`` | one per ``test_list`` assert | the assert finishes |
| LeetCode | typing/collections prelude + ``ListNode``/``TreeNode`` + ``class Solution`` | the ``test`` script, one test per assert | each assert finishes |

Sources (PRIME repository): ``training/verl/utils/reward_score/evaluation_utils/code_util/__init__.py``
takes the text after the last "```python" up to the next fence as the program (the whole response
when there is none); ``.../code_util/testing_util.py`` runs it after a prelude of star imports of
17 standard modules with the recursion limit raised, as ``__main__`` with stdin for input/output
tests, or calls ``fn_name`` (on ``Solution()`` when the program mentions ``class Solution``) with one
JSON value per input line. The benchmarks' code extraction is ``match_code`` of
``eval/Coding/{human_eval,mbpp,leetcode}/evaluate_*.py`` (see :func:`extract_code`).
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from typing import Any

from primekit.errors import InputError
from primekit.verifiers.code.suite import TestSuite

__all__ = ["TestFormatError", "extract_program", "extract_code", "apps_suite", "humaneval_suite", "mbpp_suite",
           "leetcode_suite", "APPS_PRELUDE", "LEETCODE_PRELUDE"]

_PRELUDE_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins", "typing")
#: What PRIME's checker puts before every APPS program: star imports (so ``gcd``, ``deque``, ``List``
#: work without an import), the modules themselves, and a deep recursion limit.
APPS_PRELUDE = ("".join(f"from {name} import *\n" for name in _PRELUDE_MODULES)
                + "".join(f"import {name}\n" for name in _PRELUDE_MODULES if name not in ("builtins", "typing"))
                + "sys.setrecursionlimit(6 * 10 ** 5)\n")
#: LeetCode stubs use ``List``/``Optional`` and linked-list/tree nodes without defining them.
LEETCODE_PRELUDE = '''from typing import *
from collections import *
from functools import *
from itertools import *
from heapq import *
from bisect import *
from math import *
import collections, functools, heapq, itertools, math, bisect, string, re


class ListNode:
    def __init__(self, val=0, next=None):
        self.val = val
        self.next = next


class TreeNode:
    def __init__(self, val=0, left=None, right=None):
        self.val = val
        self.left = left
        self.right = right


'''


class TestFormatError(InputError):
    """A problem's tests cannot be read (malformed JSON, missing fields, ...)."""

    __test__ = False  # not a pytest test class


# ------------------------------------------------------------------------------------------------
# code extraction


def extract_program(response: str) -> str:
    """The program in a response, as PRIME's RL checker takes it: after the last "```python" up to
    the next fence; without such a block, the response up to its first fence."""
    return response.split("```python")[-1].split("```")[0]


_PYTHON_BLOCK = re.compile(r"```python(.*?)```", re.DOTALL)
_ANY_BLOCK = re.compile(r"```(.*?)```", re.DOTALL)


def extract_code(response: str) -> str:
    """The code of a benchmark answer (PRIME's evaluation scripts): the last fenced python block that
    defines a function, else the last python block, then the same over any fenced block, else the
    text before the first fence."""
    for pattern in (_PYTHON_BLOCK, _ANY_BLOCK):
        blocks = pattern.findall(response)
        if blocks:
            return next((block for block in reversed(blocks) if "def " in block), blocks[-1])
    return response.split("```")[0]


# ------------------------------------------------------------------------------------------------
# APPS / Eurus-2-RL-Data


def _load_cases(test_cases: str | dict, where: dict[str, Any]) -> dict[str, Any]:
    if isinstance(test_cases, (str, bytes)):
        try:
            test_cases = json.loads(test_cases)
        except ValueError as error:
            raise TestFormatError(f"malformed JSON test cases ({error})", **where) from None
    if not isinstance(test_cases, dict):
        raise TestFormatError(f"test cases must be a JSON object, got {type(test_cases).__name__}", **where)
    inputs, outputs = test_cases.get("inputs"), test_cases.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise TestFormatError("test cases need 'inputs' and 'outputs' lists", **where)
    if len(inputs) != len(outputs):
        raise TestFormatError(f"{len(inputs)} inputs but {len(outputs)} outputs", **where)
    if not inputs:
        raise TestFormatError("no test cases", **where)
    return test_cases


def _text(value: Any, what: str, index: int, where: dict[str, Any]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    raise TestFormatError(f"test {index}: {what} must be text or a list of lines", **where)


def _arguments(value: Any, index: int, where: dict[str, Any]) -> list[Any]:
    if isinstance(value, list):
        return value  # APPS: the argument list itself
    if not isinstance(value, str):
        raise TestFormatError(f"test {index}: input must be a list of arguments or JSON lines", **where)
    try:
        return [json.loads(line) for line in value.split("\n") if line.strip()]
    except ValueError:
        raise TestFormatError(f"test {index}: an input line is not JSON", **where) from None


def _result(value: Any, index: int, where: dict[str, Any]) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise TestFormatError(f"test {index}: expected output is not JSON", **where) from None


def apps_suite(program: str, test_cases: str | dict, *, name: str = "", path: str | None = None,
               line: int | None = None, field: str | None = "test_cases") -> TestSuite:
    """A suite for APPS / Eurus-2-RL-Data test cases (a JSON string or an already parsed dict)."""
    where = {"path": path, "line": line, "field": field}
    cases = _load_cases(test_cases, where)
    fn_name = cases.get("fn_name")
    if fn_name is not None and (not isinstance(fn_name, str) or not fn_name.isidentifier()):
        raise TestFormatError(f"fn_name must be a Python identifier, got {fn_name!r}", **where)
    source = APPS_PRELUDE + program
    if fn_name is None:
        tests = tuple({"input": _text(value, "input", i, where)} for i, value in enumerate(cases["inputs"]))
        expected = tuple(_text(value, "output", i, where) for i, value in enumerate(cases["outputs"]))
        return TestSuite("stdio", source, tests, expected, name=name)
    tests = tuple({"args": _arguments(value, i, where)} for i, value in enumerate(cases["inputs"]))
    expected = tuple(_result(value, i, where) for i, value in enumerate(cases["outputs"]))
    return TestSuite("call", source, tests, expected, fn_name=fn_name, solution_class="class Solution" in program,
                     name=name)


# ------------------------------------------------------------------------------------------------
# benchmarks


def _field(problem: dict[str, Any], key: str, kinds: tuple[type, ...] = (str,)) -> Any:
    value = problem.get(key)
    if not isinstance(value, kinds):
        raise TestFormatError(f"missing or not a {'/'.join(k.__name__ for k in kinds)}",
                              field=key, path=str(problem.get("task_id", "")) or None)
    return value


def _string_list(problem: dict[str, Any], key: str) -> list[str]:
    """MBPP keeps ``test_list`` / ``test_imports`` as lists, or as the text of a Python list."""
    value = _field(problem, key, (list, str))
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value) if value.strip() else []
        except (ValueError, SyntaxError):
            raise TestFormatError("not a list of strings", field=key) from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TestFormatError("not a list of strings", field=key)
    return value


def humaneval_suite(problem: dict[str, Any], completion: str) -> TestSuite:
    """HumanEval: the program is ``prompt + completion`` (a function body, or a whole function that
    replaces the stub); the one test runs ``test`` and ``check(entry_point)``."""
    entry_point = _field(problem, "entry_point")
    program = _field(problem, "prompt") + completion
    test = _field(problem, "test") + f"\n\ncheck({entry_point})\n"
    return TestSuite("script", program, ({"code": test},), (None,), name=str(problem.get("task_id", "")),
                     prelude=_stub_module(_field(problem, "prompt")), targets=(entry_point,))


def _stub_module(prompt: str) -> str:
    """The prompt as the tests' prelude: its helpers and imports, the entry point a stub (a prompt
    whose last function has no docstring gets ``pass`` as its body)."""
    try:
        compile(prompt, "prompt.py", "exec")
        return prompt
    except SyntaxError:
        return prompt.rstrip("\n") + "\n    pass\n"


def mbpp_suite(problem: dict[str, Any], code: str) -> TestSuite:
    """MBPP: the code, then ``test_imports``; each assert of ``test_list`` is one test."""
    imports = _string_list(problem, "test_imports")
    asserts = _string_list(problem, "test_list")
    if not asserts:
        raise TestFormatError("no asserts", field="test_list")
    program = code + "\n" + "\n".join(imports) + "\n"
    return TestSuite("script", program, tuple({"code": a} for a in asserts), (None,) * len(asserts),
                     name=str(problem.get("task_id", "")), prelude="\n".join(imports) + "\n",
                     targets=_defined_names(problem.get("code")))


def _defined_names(reference: Any) -> tuple[str, ...]:
    """The functions and classes a reference solution defines at top level: the names its tests
    take from the candidate even when a built-in has the same name (MBPP's ``sum``)."""
    try:
        body = ast.parse(reference).body if isinstance(reference, str) else []
    except (SyntaxError, ValueError):
        return ()
    return tuple(node.name for node in body if isinstance(node, (ast.FunctionDef, ast.ClassDef)))


def _leetcode_tests(script: str) -> list[str]:
    """The test script cut after each assert, so each assert (with the lines before it) is a test;
    the pieces run in order in one namespace, like the script itself."""
    try:
        body = ast.parse(script).body
    except SyntaxError:
        return [script]
    lines = script.splitlines(keepends=True)
    pieces, start = [], 0
    for node in body:
        if isinstance(node, ast.Assert):
            pieces.append("".join(lines[start:node.end_lineno]))
            start = node.end_lineno
    rest = "".join(lines[start:])
    if rest.strip():
        pieces.append(rest)
    return pieces or [script]


def leetcode_solution(code: str) -> str:
    """A ``class Solution`` from an answer; code without one is indented into one (PRIME's rule)."""
    if "class Solution" in code:
        return code
    return "class Solution:\n" + textwrap.indent(code, "    ")


def leetcode_suite(problem: dict[str, Any], code: str) -> TestSuite:
    """LeetCode: prelude + the ``Solution`` class; the ``test`` script, one test per assert."""
    tests = _leetcode_tests(_field(problem, "test"))
    return TestSuite("script", LEETCODE_PRELUDE + leetcode_solution(code), tuple({"code": t} for t in tests),
                     (None,) * len(tests), name=str(problem.get("task_id", "")), prelude=LEETCODE_PRELUDE,
                     targets=("Solution",))
