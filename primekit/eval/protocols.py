r"""Evaluation protocols: the prompt, sampling settings, stop strings and answer extraction of a
published evaluation, per benchmark.

* ``primekit`` (default): primekit's own choices. The prompt is ``--template`` (Qwen2.5-Math's
  chat prompt for real benchmarks, the raw text for the toy task), greedy, 4096 new tokens (64 for
  the toy task), no stop strings, and primekit's answer extraction
  (:func:`primekit.verifiers.math.parse`: boxes joined by "and", answer phrases, the last
  number as a fallback).
* ``prime``: how PRIME (PRIME-RL/PRIME, ``eval/``) produced its published table. AIME 2024, AMC
  and MATH-500 go through its own scripts (``evaluate_aime.py``, ``evaluate_amc.py``,
  ``evaluate_math.py``); every other benchmark through its copy of the Qwen2.5-Math harness
  (``math_eval.py``, run for Minerva Math and OlympiadBench). The system prompt is the published
  ``system_prompt.md``, byte for byte (414 bytes with literal ``\n`` escapes, not newlines).
  HumanEval, MBPP and LeetCode go through its code scripts (``eval/Coding/``): the same system
  prompt, each script's question and its "Write Python code to solve the problem." suffix, greedy,
  4096 new tokens (8192 for LeetCode), ``<|eot_id|>`` as the stop of HumanEval and LeetCode and
  ``"\n\nprint(" + name`` of every MBPP function as MBPP's stops, and ``match_code`` extraction.
* ``qwen25-math``: Qwen2.5-Math's evaluation (``evaluation/``, ``--prompt_type qwen25-math-cot``):
  its raw-text prompt (no chat template), 2048 new tokens, its stop words and extraction. Qwen's
  harness has no code benchmarks, so a code benchmark under it is an error.

Every value is taken from the published files; :data:`SOURCES` cites file and line for each, and
a test checks the protocols against that table and the table against the mirrored files. With
the default ``--grader primekit``, the protocol's extraction below reads the answer and primekit's
grader decides; ``--grader prime`` / ``qwen`` run the published extraction and ``math_equal``
themselves (:mod:`primekit.eval.published`). The extraction here is therefore not all of Qwen's:
it stops before ``strip_string``, the multiple-choice re-read and Qwen's handling of empty golds,
which only the ``qwen`` grader applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from primekit.errors import InputError
from primekit.problems import TOY, BenchmarkProblem, is_code_benchmark, load_code_benchmark
from primekit.prompts import (
    CODE_SUFFIX,
    EURUS_USER_SUFFIX,
    code_messages,
    eurus_system_prompt,
    render_prompt,
    resolve_template,
)
from primekit.verifiers.code import extract_code
from primekit.verifiers.math.answer import extract_answer, normalize_answer
from primekit.verifiers.math.brackets import group_end

PRIME_COMMIT = "18ad596f08d487bb546d80d738d99ec697bd2e75"
QWEN_COMMIT = "a45202bd16f1ec06f433442dc1152d0074773465"
PRIME_REPO, QWEN_REPO = "PRIME-RL/PRIME", "QwenLM/Qwen2.5-Math"
DEFAULT_PROTOCOL = "primekit"


QWEN_COT_TEMPLATE = ("<|im_start|>system\nPlease reason step by step, and put your final answer "
                     "within \\boxed{}.<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n"
                     "<|im_start|>assistant\n")
HARNESS_STOPS = ("</s>", "<|im_end|>", "<|endoftext|>")
QWEN2_STOP_TOKEN_IDS = (151645, 151643)  # <|im_end|>, <|endoftext|>: only for "qwen2" model names
NUMINA_STOPS = ("\n###\nProblem: ", "<|eot_id|>")
EOT_STOP = ("<|eot_id|>",)  # PRIME's HumanEval and LeetCode scripts


@dataclass(frozen=True)
class Generation:
    """Sampling settings of one benchmark under a protocol."""

    max_new_tokens: int
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "stop": list(self.stop),
                "stop_token_ids": list(self.stop_token_ids)}


@dataclass(frozen=True)
class Extraction:
    """What a protocol reads from a response: ``answer`` is the stated answer (None when the
    protocol finds none) and ``graded`` the text it compares with the gold answer (PRIME's own
    scripts compare the whole response when they find no answer)."""

    answer: str | None
    graded: str | None


# ----------------------------------------------------------------------------------------------
# answer extraction rules (independent implementations of the published behaviour)


def last_box_content(text: str, commands: tuple[str, ...] = ("\\boxed", "\\fbox")) -> str | None:
    """Content of the last ``\\boxed{...}`` (else the last ``\\fbox{...}``) counting every brace
    (escaped ones too), as PRIME's scripts do; None if there is none or it never closes."""
    for command in commands:
        at = text.rfind(command)
        if at >= 0:
            open_brace = text.find("{", at)
            end = None if open_brace < 0 else group_end(text, open_brace, escapes=False)
            return None if end is None else text[open_brace + 1:end - 1].strip()
    return None


def prime_match_answer(response: str, markers: tuple[str, ...], strip_quirk: bool) -> Extraction:
    """PRIME's ``match_answer``: cut after the last of each answer marker in turn (searched in
    the lower-cased response, so a capitalised marker never matches), then take the last box.
    With ``strip_quirk`` the AIME/AMC scripts' ``str.strip`` of two character sets follows.
    Unmatched responses are graded whole."""
    text, matched = response, False
    for marker in markers:
        at = text.lower().rfind(marker)
        if at != -1:
            matched, text = True, text[at + len(marker):].strip()
    boxed = last_box_content(text)
    if boxed:
        matched, text = True, boxed
    if strip_quirk:
        text = text.strip("The final answer is ").strip(". I hope it is correct.")
    return Extraction(text if matched else None, text)


def qwen_extract_answer(response: str) -> str | None:
    """Qwen2.5-Math's ``extract_answer`` for open-answer benchmarks: Minerva's "final answer is
    $x$. I hope", else the content after the last "boxed", else after the last "he answer is" /
    "final answer is", else the last number (commas removed); then line breaks, a leading colon
    and a trailing period or slash are removed (parser.py:499-567). It stops there: Qwen's
    ``strip_string`` (parser.py:568, 736), which changes what is compared (units, ``x=``,
    ``\dfrac``...), runs only under ``--grader qwen``, as does its multiple-choice re-read."""
    text = response.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        tail = text.split("boxed")[-1]
        if tail.startswith("{"):
            end = group_end(tail, 0, escapes=False)
            pred = tail[1:end - 1] if end is not None else tail[1:]
        else:
            pred = tail.split("$")[0].strip()
    elif "he answer is" in text:
        pred = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        pred = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        pred = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        pred = numbers[-1] if numbers else ""
    pred = re.sub(r"\n\s*", "", pred)
    pred = pred[1:] if pred.startswith(":") else pred
    pred = pred[:-1] if pred.endswith(".") else pred
    pred = pred[:-1] if pred.endswith("/") else pred
    return pred or None


@lru_cache(maxsize=1)
def mbpp_stops() -> tuple[str, ...]:
    """PRIME's MBPP stop strings (``evaluate_mbpp.py:159-161``): ``"\\n\\nprint(" + name`` for the
    function of every row of the benchmark file, so every prompt stops at a ``print`` call of any
    MBPP function. The name is the script's signature up to "(", quirk included: its
    ``lstrip("def ")`` also eats leading d/e/f letters of the name (``find_x`` gives ``ind_x``)."""
    names = []
    for problem in load_code_benchmark("mbpp"):
        signature = re.search(r"Write a Python function `([^`]*)`", problem.problem)
        if signature is None:
            raise InputError("no 'Write a Python function `...`' in the MBPP question", field=problem.id)
        names.append("\n\nprint(" + signature.group(1).split("(")[0].strip())
    return tuple(dict.fromkeys(names))


def qwen_question(problem: BenchmarkProblem) -> str:
    """The question as Qwen's ``parse_question`` gives it: stripped, with " (True or False)" or
    " (Yes or No)" appended when the gold answer is one of those words."""
    question = problem.problem
    gold = normalize_answer(problem.answer).lower()
    if gold in ("true", "false"):
        question += " (True or False)"
    if gold in ("yes", "no"):
        question += " (Yes or No)"
    return question.strip()


# ----------------------------------------------------------------------------------------------
# the protocols


def _chat(tokenizer, messages: list[dict[str, str]]) -> str:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise InputError("this protocol renders its prompt with the model's chat template, and "
                         "the tokenizer has none")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _no_toy(protocol: str, benchmark: str) -> None:
    if benchmark == TOY:
        raise InputError(f"protocol '{protocol}' is a published evaluation of real benchmarks; "
                         "the toy benchmark runs under --protocol primekit")


class PrimekitProtocol:
    name = "primekit"
    description = ("primekit's defaults: --template prompt (qwen25-math-cot chat for real "
                   "benchmarks), greedy, 4096 new tokens (64 for toy), no stops, primekit's "
                   "answer extraction")
    TOY_MAX_NEW_TOKENS, MAX_NEW_TOKENS = 64, 4096

    def prompt(self, problem: BenchmarkProblem, tokenizer, template: str = "auto") -> str:
        return render_prompt(problem, template, tokenizer)

    def generation(self, benchmark: str, model_name: str = "", toy_model: bool = False) -> Generation:
        toy = benchmark == TOY or toy_model
        # MBPP's stops keep a response from running on into calls of the function (PRIME's too)
        stop = mbpp_stops() if benchmark == "mbpp" else ()
        return Generation(self.TOY_MAX_NEW_TOKENS if toy else self.MAX_NEW_TOKENS, stop=stop)

    def extract(self, response: str, benchmark: str) -> Extraction:
        answer = extract_answer(response)
        return Extraction(answer, answer)

    def template_for(self, benchmark: str, template: str) -> str:
        return resolve_template(template, benchmark)


# PRIME's own scripts: benchmark -> (script, max new tokens, stops, markers, strip quirk)
_PRIME_SCRIPTS = {
    "aime2024": ("eval/Math/aime/evaluate_aime.py", 4096, NUMINA_STOPS,
                 ("The answer is: ", "answer:\n", "answer: "), True),
    "amc": ("eval/Math/amc/evaluate_amc.py", 4096, (),
            ("The answer is: ", "answer:\n", "answer: "), True),
    "math500": ("eval/Math/math/evaluate_math.py", 8192, NUMINA_STOPS,
                ("the answer is: ", "answer:\n", "answer: "), False),
}
PRIME_HARNESS_BENCHMARKS = ("minerva_math", "olympiadbench")  # PRIME's sh/eval.sh DATA_NAME
# PRIME's code scripts: benchmark -> (script, max new tokens); stops in _prime_code_stops
_PRIME_CODE_SCRIPTS = {
    "humaneval": ("eval/Coding/human_eval/evaluate_human_eval.py", 4096),
    "mbpp": ("eval/Coding/mbpp/evaluate_mbpp.py", 4096),
    "leetcode": ("eval/Coding/leetcode/evaluate_leetcode.py", 8192),
}


def _prime_code_stops(benchmark: str) -> tuple[str, ...]:
    return mbpp_stops() if benchmark == "mbpp" else EOT_STOP


def _qwen2_stop_ids(model_name: str) -> tuple[int, ...]:
    """Both harnesses add Qwen2's end tokens as stop ids when "qwen2" is in the model's name."""
    return QWEN2_STOP_TOKEN_IDS if "qwen2" in model_name.lower() else ()


class PrimeProtocol:
    name = "prime"
    description = ("PRIME's published evaluation: Eurus system prompt (system_prompt.md) + "
                   "'Present the answer in LaTex format' suffix (code: 'Write Python code to solve "
                   "the problem.'), greedy, 8192 tokens for MATH-500 and LeetCode and 4096 "
                   "elsewhere, its stop strings and answer (code: match_code) extraction")

    def prompt(self, problem: BenchmarkProblem, tokenizer, template: str = "auto") -> str:
        _no_toy(self.name, problem.benchmark)
        if is_code_benchmark(problem.benchmark):  # make_conv_hf of the code scripts
            return _chat(tokenizer, code_messages(problem.problem))
        if problem.benchmark in _PRIME_SCRIPTS:
            user = problem.problem + EURUS_USER_SUFFIX  # make_conv_hf: the question as it is
        else:  # math_eval.py: the qwen25-math-cot user turn (a stripped question), the suffix
            user = qwen_question(problem) + EURUS_USER_SUFFIX
        return _chat(tokenizer, [{"role": "system", "content": eurus_system_prompt()},
                                 {"role": "user", "content": user}])

    def generation(self, benchmark: str, model_name: str = "", toy_model: bool = False) -> Generation:
        _no_toy(self.name, benchmark)
        if benchmark in _PRIME_CODE_SCRIPTS:
            return Generation(_PRIME_CODE_SCRIPTS[benchmark][1], stop=_prime_code_stops(benchmark))
        if benchmark in _PRIME_SCRIPTS:
            _, budget, stops, _, _ = _PRIME_SCRIPTS[benchmark]
            return Generation(budget, stop=stops)
        return Generation(4096, stop=HARNESS_STOPS, stop_token_ids=_qwen2_stop_ids(model_name))

    def extract(self, response: str, benchmark: str) -> Extraction:
        if is_code_benchmark(benchmark):  # match_code, as the code grader reads the response
            code = extract_code(response)
            return Extraction(code if code.strip() else None, code)
        if benchmark in _PRIME_SCRIPTS:
            _, _, _, markers, quirk = _PRIME_SCRIPTS[benchmark]
            return prime_match_answer(response, markers, quirk)
        answer = qwen_extract_answer(response)
        return Extraction(answer, answer)

    def template_for(self, benchmark: str, template: str) -> str:
        return "prime"


class Qwen25MathProtocol:
    name = "qwen25-math"
    description = ("Qwen2.5-Math's evaluation (prompt type qwen25-math-cot): its raw-text "
                   "prompt, greedy, 2048 new tokens, its stop words and answer extraction")

    def prompt(self, problem: BenchmarkProblem, tokenizer=None, template: str = "auto") -> str:
        self._math_only(problem.benchmark)
        return QWEN_COT_TEMPLATE.replace("{input}", qwen_question(problem)).strip(" ")

    def generation(self, benchmark: str, model_name: str = "", toy_model: bool = False) -> Generation:
        self._math_only(benchmark)
        return Generation(2048, stop=HARNESS_STOPS, stop_token_ids=_qwen2_stop_ids(model_name))

    def extract(self, response: str, benchmark: str) -> Extraction:
        answer = qwen_extract_answer(response)
        return Extraction(answer, answer)

    def template_for(self, benchmark: str, template: str) -> str:
        return "qwen25-math"

    def _math_only(self, benchmark: str) -> None:
        _no_toy(self.name, benchmark)
        if is_code_benchmark(benchmark):
            raise InputError(f"protocol '{self.name}' is Qwen2.5-Math's math evaluation, which has no "
                             f"code benchmarks; run {benchmark} under --protocol prime or primekit")


PROTOCOLS = {p.name: p for p in (PrimekitProtocol(), PrimeProtocol(), Qwen25MathProtocol())}


def get_protocol(name: str):
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol '{name}' (choose from {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


# ----------------------------------------------------------------------------------------------
# where every setting comes from


@dataclass(frozen=True)
class Source:
    """One row of a protocol's provenance table: ``quote`` is text on ``path``:``line`` of
    ``repo`` at the pinned commit."""

    protocol: str
    scope: str
    setting: str
    value: str
    repo: str
    path: str
    line: int
    quote: str

    def citation(self) -> str:
        return f"{self.repo}:{self.path}:{self.line}"


_P, _Q = PRIME_REPO, QWEN_REPO
_AIME, _AMC, _MATH = (_PRIME_SCRIPTS[b][0] for b in ("aime2024", "amc", "math500"))
_HARNESS = "eval/Math/Qwen25-Math/evaluation"
_HUMANEVAL, _MBPP, _LEETCODE = (_PRIME_CODE_SCRIPTS[b][0] for b in ("humaneval", "mbpp", "leetcode"))
_CODE_SUFFIX_LINE = ('"\\n\\nWrite Python code to solve the problem. Present the code in \\n```python\\n'
                     'Your code\\n```\\nat the end."')
SOURCES: list[Source] = [
    Source("prime", "all", "system prompt", "system_prompt.md (git blob 51ada27615c0)", _P,
           f"{_AIME}", 148, 'system_prompt = open("system_prompt.md").read()'),
    Source("prime", "all", "user suffix", repr(EURUS_USER_SUFFIX), _P, _AIME, 149,
           'content = question + "\\n\\nPresent the answer in LaTex format: \\\\boxed{Your answer}"'),
    Source("prime", "aime2024", "max_new_tokens", "4096", _P, _AIME, 49, "max_tokens=4096"),
    Source("prime", "aime2024", "temperature", "0", _P, _AIME, 50, "temperature=0"),
    Source("prime", "aime2024", "stop", repr(list(NUMINA_STOPS)), _P, _AIME, 51,
           'stop=["\\n###\\nProblem: ", "<|eot_id|>"]'),
    Source("prime", "aime2024", "rows", "the 30 rows of 2024_AIME_I/II", _P, _AIME, 213,
           'dic["2024_AIME_II_Problems"]["success"] + dic["2024_AIME_I_Problems"]["success"]'),
    Source("prime", "aime2024", "extraction", "match_answer + strip of two character sets", _P,
           _AIME, 179, 'model_output.strip("The final answer is ").strip(". I hope it is correct.")'),
    Source("prime", "amc", "max_new_tokens", "4096", _P, _AMC, 53, "max_tokens=4096"),
    Source("prime", "amc", "temperature", "0", _P, _AMC, 54, "temperature=0"),
    Source("prime", "amc", "stop", "[]", _P, _AMC, 56, "stop=[]"),
    Source("prime", "amc", "extraction", "match_answer + strip of two character sets", _P, _AMC,
           187, 'model_output.strip("The final answer is ").strip(". I hope it is correct.")'),
    Source("prime", "math500", "max_new_tokens", "8192", _P, _MATH, 47, "max_tokens=8192"),
    Source("prime", "math500", "temperature", "0", _P, _MATH, 48, "temperature=0"),
    Source("prime", "math500", "stop", repr(list(NUMINA_STOPS)), _P, _MATH, 49,
           'stop=["\\n###\\nProblem: ", "<|eot_id|>"]'),
    Source("prime", "math500", "extraction", "match_answer ('the answer is: ' marker), no strip",
           _P, _MATH, 96, "ans_marker = 'the answer is: '"),
    Source("prime", "aime2024, amc", "extraction markers", "'answer:\\n', 'answer: ', last box",
           _P, _AIME, 99, "ans_marker = 'The answer is: '"),
    Source("prime", "harness", "benchmarks", "minerva_math, olympiadbench", _P,
           f"{_HARNESS}/sh/eval.sh", 11, 'DATA_NAME="minerva_math,olympiadbench"'),
    Source("prime", "harness", "prompt type", "qwen25-math-cot user turn", _P, "eval/run.sh", 83,
           'PROMPT_TYPE="qwen25-math-cot"'),
    Source("prime", "harness", "chat template", "system prompt + user + suffix", _P,
           f"{_HARNESS}/math_eval.py", 236, '{"role": "system", "content": system_prompt}'),
    Source("prime", "harness", "max_new_tokens", "4096", _P, f"{_HARNESS}/math_eval.py", 36,
           'parser.add_argument("--max_tokens_per_call", default=4096, type=int)'),
    Source("prime", "harness", "stop", repr(list(HARNESS_STOPS)), _P, f"{_HARNESS}/math_eval.py",
           248, 'stop_words = ["</s>", "<|im_end|>", "<|endoftext|>"]'),
    Source("prime", "harness", "stop_token_ids", "[151645, 151643] if 'qwen2' in the model name",
           _P, f"{_HARNESS}/math_eval.py", 287, "[151645, 151643]"),
    Source("prime", "harness", "temperature", "0", _P, f"{_HARNESS}/sh/eval.sh", 21,
           "--temperature 0"),
    Source("prime", "harness", "n", "1", _P, f"{_HARNESS}/sh/eval.sh", 22, "--n_sampling 1"),
    Source("prime", "harness", "top_p", "1", _P, f"{_HARNESS}/sh/eval.sh", 23, "--top_p 1"),
    Source("prime", "harness", "extraction", "extract_answer", _P, f"{_HARNESS}/parser.py", 499,
           "def extract_answer(pred_str, data_name, use_last_number=True):"),
    Source("prime", "humaneval", "system prompt", "system_prompt.md (git blob 51ada27615c0)", _P, _HUMANEVAL,
           55, 'system_prompt = open("system_prompt.md").read()'),
    Source("prime", "humaneval", "question", "Write a Python function `{signature}` ... ```python\n{prompt}\n```",
           _P, _HUMANEVAL, 50, "Write a Python function `{signature}` to solve the following problem: "
           "Present code in ```python```"),
    Source("prime", "humaneval", "code suffix", repr(CODE_SUFFIX), _P, _HUMANEVAL, 59, _CODE_SUFFIX_LINE),
    Source("prime", "humaneval", "max_new_tokens", "4096", _P, _HUMANEVAL, 92, "max_tokens=4096"),
    Source("prime", "humaneval", "temperature", "0", _P, _HUMANEVAL, 23,
           'parser.add_argument("--temperature", type=float, default=0.0)'),
    Source("prime", "humaneval", "stop", repr(list(EOT_STOP)), _P, _HUMANEVAL, 95, 'stop=["<|eot_id|>"]'),
    Source("prime", "humaneval", "code extraction", "match_code", _P, _HUMANEVAL, 65, "def match_code(s):"),
    Source("prime", "mbpp", "system prompt", "system_prompt.md (git blob 51ada27615c0)", _P, _MBPP, 74,
           'system_prompt = open("system_prompt.md").read()'),
    Source("prime", "mbpp", "question", "Write a Python function `{signature}` ... Let's coding step by step.",
           _P, _MBPP, 72, "The code should pass the following test cases:>>> {testcase}\\n\\n Let's coding step by step.\\n"),
    Source("prime", "mbpp", "code suffix", repr(CODE_SUFFIX), _P, _MBPP, 77, _CODE_SUFFIX_LINE),
    Source("prime", "mbpp", "max_new_tokens", "4096", _P, _MBPP, 47, "max_tokens=4096"),
    Source("prime", "mbpp", "temperature", "0", _P, _MBPP, 48, "temperature=0.0"),
    *(Source(protocol, "mbpp", "stop", "'\\n\\nprint(' + the name of every MBPP function", _P, _MBPP,
             161, 'STOP_WORDS.append("\\n\\nprint(" + signature.split("(")[0].strip())')
      for protocol in ("prime", "primekit")),
    Source("prime", "mbpp", "code extraction", "match_code", _P, _MBPP, 21, "def match_code(s):"),
    Source("prime", "leetcode", "system prompt", "system_prompt.md (git blob 51ada27615c0)", _P, _LEETCODE, 71,
           'system_prompt = open("system_prompt.md").read()'),
    Source("prime", "leetcode", "question", "prompt_sft", _P, _LEETCODE, 74, 'example["prompt_sft"]'),
    Source("prime", "leetcode", "code suffix", repr(CODE_SUFFIX), _P, _LEETCODE, 74, _CODE_SUFFIX_LINE),
    Source("prime", "leetcode", "max_new_tokens", "8192", _P, _LEETCODE, 59, "max_tokens=8192"),
    Source("prime", "leetcode", "temperature", "0", _P, _LEETCODE, 22,
           'parser.add_argument("--temperature", type=float, default=0.)'),
    Source("prime", "leetcode", "stop", repr(list(EOT_STOP)), _P, _LEETCODE, 62, 'stop=["<|eot_id|>"],)'),
    Source("prime", "leetcode", "code extraction", "match_code", _P, _LEETCODE, 32, "def match_code(s):"),
    Source("qwen25-math", "all", "prompt", "qwen25-math-cot raw text", _Q, "evaluation/utils.py",
           142, "<|im_start|>system\\nPlease reason step by step, and put your final answer "
           "within \\\\boxed{{}}.<|im_end|>\\n"),
    Source("qwen25-math", "all", "prompt strip", "strip(' ')", _Q, "evaluation/utils.py", 240,
           'return full_prompt.strip(" ")'),
    Source("qwen25-math", "all", "max_new_tokens", "2048", _Q, "evaluation/math_eval.py", 36,
           'parser.add_argument("--max_tokens_per_call", default=2048, type=int)'),
    Source("qwen25-math", "all", "stop", repr(list(HARNESS_STOPS)), _Q, "evaluation/math_eval.py",
           234, 'stop_words = ["</s>", "<|im_end|>", "<|endoftext|>"]'),
    Source("qwen25-math", "all", "stop_token_ids", "[151645, 151643] if 'qwen2' in the model name",
           _Q, "evaluation/math_eval.py", 270, "[151645, 151643]"),
    Source("qwen25-math", "all", "temperature", "0", _Q, "evaluation/sh/eval.sh", 21,
           "--temperature 0"),
    Source("qwen25-math", "all", "n", "1", _Q, "evaluation/sh/eval.sh", 22, "--n_sampling 1"),
    Source("qwen25-math", "all", "question", "parse_question (True/False, Yes/No suffix)", _Q,
           "evaluation/parser.py", 716, 'question += " (True or False)"'),
    Source("qwen25-math", "all", "extraction", "extract_answer", _Q, "evaluation/parser.py", 499,
           "def extract_answer(pred_str, data_name, use_last_number=True):"),
]


def sources_markdown(protocol: str | None = None) -> str:
    """The provenance table as Markdown (README, ``prime-eval prompts --sources``)."""
    commits = {PRIME_REPO: PRIME_COMMIT[:7], QWEN_REPO: QWEN_COMMIT[:7]}
    lines = ["| protocol | benchmarks | setting | value | source (file:line @ commit) |",
             "|---|---|---|---|---|"]
    for row in SOURCES:
        if protocol is None or row.protocol == protocol:
            value = row.value.replace("|", "\\|").replace("\n", "\\n")
            lines.append(f"| {row.protocol} | {row.scope} | {row.setting} | `{value}` | "
                         f"{row.citation()} @ {commits[row.repo]} |")
    return "\n".join(lines)
