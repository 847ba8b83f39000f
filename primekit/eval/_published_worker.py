r"""The published graders' own code, imported from an export of their repository, as a line server.

``python _published_worker.py KIND SOURCE`` reads one JSON request per line on stdin and answers
each with ``{"equal": bool, "extracted": str | null}`` on stdout, after a first ``{}`` line that
says it has loaded. It imports nothing of primekit and only the standard library itself, so that
the published code sees the packages of the environment it runs in (``.venv-grader``: the
repositories' own pins) and nothing else. KIND is:

* ``prime-scripts``: SOURCE is an export of PRIME-RL/PRIME; a request is ``{"script":
  "math"|"aime"|"amc", "response", "gold"}``, judged as the scripts' ``run`` loops do
  (evaluate_math.py:187-205, evaluate_aime.py:175-189, evaluate_amc.py:184-197): the AIME gold
  loses its leading zeros, the script's ``match_answer`` extracts, the AIME/AMC scripts strip two
  character sets, and the script's ``math_equal(..., timeout=True)`` decides, tried with
  pi = math.pi and 3.14 when either side has ``\pi``; any exception means wrong.
* ``qwen-harness``: SOURCE is a Qwen2.5-Math ``evaluation`` folder (Qwen's own, or PRIME's copy
  under ``eval/Math/Qwen25-Math/evaluation``); a request is ``{"data_name", "response", "gold"}``,
  judged as ``math_eval.py`` and ``evaluate.py`` do: ``run_execute`` (``extract_answer``, then
  ``strip_string``, parser.py:722-737), the gold through ``parse_ground_truth``'s steps for a
  gold answer (parser.py:575-651, below), the multiple-choice re-read for letter golds
  (math_eval.py:359-371 of Qwen's copy), then ``math_equal_process`` (grader.py:262).

Both evaluate model text with ``eval`` and sympy: run this only as
:class:`primekit.eval.published.PublishedWorker` does (no network, resource limits, an empty
working folder, a wall limit per request).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import types
from pathlib import Path

PRIME_SCRIPTS = {"math": "eval/Math/math/evaluate_math.py", "aime": "eval/Math/aime/evaluate_aime.py",
                 "amc": "eval/Math/amc/evaluate_amc.py"}
# Imported at the top of the published files for generation only; stubbed so grading needs none.
_GENERATION_ONLY = {"vllm": ("LLM", "SamplingParams"), "openai": (), "torch": (),
                    "transformers": ("AutoTokenizer",)}


def _stub_generation_modules() -> None:
    for name, attributes in _GENERATION_ONLY.items():
        stub = types.ModuleType(name)
        for attribute in attributes:
            setattr(stub, attribute, None)
        sys.modules[name] = stub


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class PrimeScripts:
    def __init__(self, source: Path) -> None:
        _stub_generation_modules()
        sys.path.insert(0, str(source / "eval"))  # the scripts import eval/utils as "utils"
        self.scripts = {key: _load(f"prime_{key}", source / relative) for key, relative in PRIME_SCRIPTS.items()}

    def judge(self, request: dict) -> tuple[bool, str | None]:
        kind, script = request["script"], self.scripts[request["script"]]
        answer = str(request["gold"])
        if kind == "aime":
            answer = answer.lstrip("0")
        _, output = script.match_answer(request["response"])
        if kind in ("aime", "amc"):
            output = output.strip("The final answer is ").strip(". I hope it is correct.")
        try:
            if "\\pi" in output or "\\pi" in answer:
                return any(script.math_equal(output, answer, timeout=True, pi=pi) for pi in (math.pi, 3.14)), output
            return bool(script.math_equal(output, answer, timeout=True)), output
        except BaseException:  # the scripts' bare ``except:``
            return False, output


class QwenHarness:
    def __init__(self, source: Path) -> None:
        _stub_generation_modules()
        sys.path[:0] = [str(source), str(source / "latex2sympy")]  # latex2sympy2: its `pip install -e`
        import grader
        import parser  # noqa: A004 -- the harness's parser.py (no standard module of that name since 3.10)

        self.parser, self.grader = parser, grader

    def gold(self, gold: str, data_name: str) -> str:
        """A gold answer as ``parse_ground_truth`` leaves it: the per-dataset step that applies to
        an answer field (parser.py:619-629), then ``strip_string`` (parser.py:641-650; the
        datasets in STRIP_EXCEPTIONS only rename \\neq, \\leq, \\geq)."""
        if data_name in ("gaokao2023en", "college_math", "gaokao_math_cloze"):
            gold = gold.replace("$", "").strip()
        elif data_name == "olympiadbench":
            gold = gold.strip("$")
        if data_name in self.parser.STRIP_EXCEPTIONS:
            return gold.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
        return self.parser.strip_string(gold, skip_unit=data_name == "carp_en")

    def judge(self, request: dict) -> tuple[bool, str | None]:
        data_name = request["data_name"]
        gold = self.gold(str(request["gold"]), data_name)
        pred, _ = self.parser.run_execute(None, request["response"], "cot", data_name)
        # math_eval.py:359-371: a letter gold re-reads the response; a multiple-choice gold
        # (every character a letter A-E, the empty string included) keeps the letters of pred
        letters = ["A", "B", "C", "D", "E"]
        if gold in letters and pred not in letters:
            pred = self.parser.choice_answer_clean(request["response"])
        elif all(c in letters for c in gold) and not all(c in letters for c in (pred or "")):
            pred = "".join(c for c in (pred or "") if c in letters)
        return bool(self.grader.math_equal_process((0, pred, gold))), pred


def main(kind: str, source: str) -> None:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the published code's prints go nowhere
    judge = {"prime-scripts": PrimeScripts, "qwen-harness": QwenHarness}[kind](Path(source)).judge
    replies.write("{}\n")
    replies.flush()
    for line in sys.stdin:
        equal, extracted = judge(json.loads(line))
        replies.write(json.dumps({"equal": bool(equal), "extracted": extracted}) + "\n")
        replies.flush()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
