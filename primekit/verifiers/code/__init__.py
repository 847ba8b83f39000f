"""The code verifier: run a candidate program against tests in a sandbox, get a verdict with
per-test details.

    from primekit.verifiers.code import CodeVerifier, apps_suite, extract_program

    verifier = CodeVerifier()                       # refuses in one line without namespaces
    suite = apps_suite(extract_program(response), row["test_cases"])
    verdict = verifier.verify(suite)                # verdict.passed, verdict.tests[i].status

Formats (``formats``): APPS / Eurus-2-RL-Data JSON (stdin/stdout, or ``fn_name`` calls), HumanEval,
MBPP, LeetCode. The sandbox (``sandbox``) and what it guarantees are described there and in the
README's "Code" section.
"""

from primekit.verifiers.code.formats import (
    APPS_PRELUDE,
    TestFormatError,
    apps_suite,
    extract_code,
    extract_program,
    humaneval_suite,
    leetcode_suite,
    mbpp_suite,
)
from primekit.verifiers.code.launch import check_sandbox
from primekit.verifiers.code.pool import CodeVerifier, default_workers
from primekit.verifiers.code.sandbox import run_suite
from primekit.verifiers.code.settings import SandboxSettings, SandboxUnavailable
from primekit.verifiers.code.suite import STATUSES, TestResult, TestSuite, Verdict

__all__ = ["APPS_PRELUDE", "CodeVerifier", "SandboxSettings", "SandboxUnavailable", "STATUSES", "TestFormatError",
           "TestResult", "TestSuite", "Verdict", "apps_suite", "check_sandbox", "default_workers", "extract_code",
           "extract_program", "humaneval_suite", "leetcode_suite", "mbpp_suite", "run_suite"]
