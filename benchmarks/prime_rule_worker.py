r"""PRIME's own correctness rule, imported from a checkout of PRIME-RL/PRIME, as a line server.

``python prime_rule_worker.py CHECKOUT`` reads one JSON request per line on stdin
(``{"script": "math"|"aime"|"amc", "response": ..., "gold": ...}``) and answers each with
``{"equal": bool, "extracted": str}`` on stdout. It uses the standard library only, so that
PRIME's pinned packages (``PYTHONPATH``) are the ones its code sees.

PRIME's ``math_equal`` hands model text to ``eval``, ``parse_expr`` and ``simplify``: start
this only the way ``grader_bench.py`` does, with no network and resource limits, never in a
process that matters. Per response it does what the scripts' ``run`` loop does
(evaluate_math.py:187-205, evaluate_aime.py:175-189, evaluate_amc.py:184-197): the AIME gold
loses its leading zeros, the script's ``match_answer`` extracts, the AIME/AMC scripts strip two
character sets, and the script's ``math_equal(..., timeout=True)`` decides, tried with
pi = math.pi and 3.14 when either side has ``\pi``; any exception means wrong.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import types
from pathlib import Path

# PRIME's correctness scripts; the key names the rule a text set is graded by.
PRIME_SCRIPTS = {"math": "eval/Math/math/evaluate_math.py", "aime": "eval/Math/aime/evaluate_aime.py",
                 "amc": "eval/Math/amc/evaluate_amc.py"}
# Imported by the scripts at the top for generation only; stubbed so that grading needs none.
_GENERATION_ONLY = {"vllm": ("LLM", "SamplingParams"), "openai": (), "torch": (),
                    "transformers": ("AutoTokenizer",)}


def _load_scripts(checkout: Path) -> dict[str, types.ModuleType]:
    for name, attributes in _GENERATION_ONLY.items():
        stub = types.ModuleType(name)
        for attribute in attributes:
            setattr(stub, attribute, None)
        sys.modules[name] = stub
    sys.path.insert(0, str(checkout / "eval"))  # the scripts import eval/utils as "utils"
    scripts = {}
    for key, relative in PRIME_SCRIPTS.items():
        spec = importlib.util.spec_from_file_location(f"prime_{key}", checkout / relative)
        scripts[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(scripts[key])
    return scripts


def _judge(script: types.ModuleType, kind: str, response: str, gold: str) -> tuple[bool, str]:
    answer = str(gold)
    if kind == "aime":
        answer = answer.lstrip("0")
    _, output = script.match_answer(response)
    if kind in ("aime", "amc"):
        output = output.strip("The final answer is ").strip(". I hope it is correct.")
    try:
        if "\\pi" in output or "\\pi" in answer:
            equivs = [script.math_equal(output, answer, timeout=True, pi=pi) for pi in (math.pi, 3.14)]
            return any(equivs), output
        return bool(script.math_equal(output, answer, timeout=True)), output
    except BaseException:  # the scripts' bare ``except:``
        return False, output


def main(checkout: str) -> None:
    scripts = _load_scripts(Path(checkout))
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # PRIME's own prints go nowhere
    replies.write("{}\n")
    replies.flush()
    for line in sys.stdin:
        request = json.loads(line)
        equal, extracted = _judge(scripts[request["script"]], request["script"],
                                  request["response"], request["gold"])
        replies.write(json.dumps({"equal": bool(equal), "extracted": extracted}) + "\n")
        replies.flush()


if __name__ == "__main__":
    main(sys.argv[1])
