r"""Prompts: the templates a problem is rendered with, through the model's chat template.

A template names the conversation a problem becomes (``qwen25-math-cot``: Qwen2.5-Math's
step-by-step system prompt; ``eurus``: PRIME's published system prompt, byte for byte, and its
answer-format suffix; ``raw``: the problem text as it is; ``auto``: raw for the toy benchmark,
qwen25-math-cot otherwise). Code benchmarks always use PRIME's code prompt. The rendered text,
generation prompt included, is exactly what the model is given.
"""

from __future__ import annotations

import functools
from importlib import resources

from primekit.errors import InputError
from primekit.problems import TOY, BenchmarkProblem, is_code_benchmark

STEP_BY_STEP = "Please reason step by step, and put your final answer within \\boxed{}."
EURUS_USER_SUFFIX = "\n\nPresent the answer in LaTex format: \\boxed{Your answer}"


@functools.cache
def eurus_system_prompt() -> str:
    """Eurus-2-7B-PRIME's system prompt exactly as PRIME's evaluation reads it from
    ``eval/system_prompt.md``: 414 bytes whose line breaks are literal ``\\n`` escapes (read once,
    not once per prompt)."""
    return (resources.files("primekit.prompts") / "prime_system_prompt.md").read_text(encoding="utf-8")


#: The user-message suffix of every PRIME code prompt.
CODE_SUFFIX = "\n\nWrite Python code to solve the problem. Present the code in \n```python\nYour code\n```\nat the end."
#: ``eval/system_prompt.md`` as PRIME's code scripts read it: the Eurus system prompt with its
#: newlines written as the two characters backslash and n (the file holds no real newline).
PRIME_CODE_SYSTEM = eurus_system_prompt()

TEMPLATES = {
    "auto": "raw for the toy benchmark, qwen25-math-cot for every other one",
    "raw": "the problem text as it is, no chat template",
    "qwen25-math-cot": "chat template; system: 'Please reason step by step, and put your final "
                       "answer within \\boxed{}.', user: the problem (Qwen2.5-Math's evaluation)",
    "eurus": "chat template; system: PRIME's published eval/system_prompt.md (byte for byte), "
             "user: the problem + 'Present the answer in LaTex format: \\boxed{Your answer}' "
             "(--protocol prime adds PRIME's budgets, stops and extraction)",
}


def check_template(template: str) -> str:
    if template not in TEMPLATES:
        raise InputError(f"unknown prompt template '{template}' (choose from {', '.join(TEMPLATES)})")
    return template


def resolve_template(template: str, benchmark: str) -> str:
    """``auto`` means raw text for the toy task (its prompts are already complete) and the
    Qwen2.5-Math chat prompt for real benchmarks."""
    check_template(template)
    if template != "auto":
        return template
    return "raw" if benchmark == TOY else "qwen25-math-cot"


def chat_messages(problem: str, template: str) -> list[dict[str, str]]:
    """The conversation a chat template renders for ``template`` (not for ``raw``/``auto``)."""
    if template == "qwen25-math-cot":
        return [{"role": "system", "content": STEP_BY_STEP}, {"role": "user", "content": problem}]
    if template == "eurus":
        return [{"role": "system", "content": eurus_system_prompt()},
                {"role": "user", "content": problem.strip() + EURUS_USER_SUFFIX}]
    raise ValueError(f"template '{template}' is not a chat template")


def render_text(problem: str, template: str, tokenizer=None) -> str:
    """The exact text given to a model for ``problem`` under a resolved (not ``auto``) template,
    generation prompt included."""
    if template == "raw":
        return problem
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise InputError(f"prompt template '{template}' needs a tokenizer with a chat template; "
                         "use --template raw for a base model")
    return tokenizer.apply_chat_template(chat_messages(problem, template), tokenize=False,
                                         add_generation_prompt=True)


def render_prompt(problem: BenchmarkProblem, template: str, tokenizer=None) -> str:
    """:func:`render_text` for a benchmark problem, resolving ``auto`` by its benchmark (code
    benchmarks: PRIME's code prompt, :func:`render_code_prompt`)."""
    if is_code_benchmark(problem.benchmark):
        return render_code_prompt(problem, check_template(template), tokenizer)
    return render_text(problem.problem, resolve_template(template, problem.benchmark), tokenizer)


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
