"""Evaluation protocols against the published files: the provenance table's values are the
protocols' settings, the shipped PRIME system prompt is the published file byte for byte, and
(where a copy of the two repositories is at hand) every cited line says what the table quotes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from primekit import toy
from primekit.cli import dispatch
from primekit.errors import InputError
from primekit.eval import protocols as pr
from primekit.problems import BenchmarkProblem, load_benchmark
from primekit.prompts import CODE_SUFFIX, eurus_system_prompt
from upstream import require_upstream_file, upstream_file

PRIME_PROMPT_BLOB = "51ada27615c009cc92bf42d9e31f6ef7a3b8252c"  # eval/system_prompt.md @ 18ad596
COMMITS = {pr.PRIME_REPO: pr.PRIME_COMMIT, pr.QWEN_REPO: pr.QWEN_COMMIT}


def upstream(repo: str, path: str) -> str | None:
    return upstream_file(repo, path, COMMITS[repo])


def problem(benchmark: str, text: str = "What is $1+1$? ", answer: str = "2") -> BenchmarkProblem:
    return BenchmarkProblem(id="0", problem=text, answer=answer, benchmark=benchmark)


def test_the_shipped_prime_system_prompt_is_the_published_file():
    data = eurus_system_prompt().encode("utf-8")
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob == PRIME_PROMPT_BLOB and len(data) == 414
    assert data.startswith(b"\\nWhen tackling") and b"\n" not in data  # literal \n escapes
    published = upstream(pr.PRIME_REPO, "eval/system_prompt.md")
    if published is not None:
        assert published.encode("utf-8") == data


def actual_value(row: pr.Source) -> str | None:
    """The protocol's own value for a table row whose value is a plain setting."""
    protocol = pr.get_protocol(row.protocol)
    benchmark = {"harness": "minerva_math", "all": "aime24", "aime2024, amc": "aime2024"}.get(
        row.scope, row.scope)
    generation = protocol.generation(benchmark, "Qwen/Qwen2.5-Math-7B-Instruct")
    values = {"max_new_tokens": str(generation.max_new_tokens),
              "temperature": str(int(generation.temperature)), "n": str(generation.n),
              "stop": repr(list(generation.stop)), "top_p": f"{generation.top_p:g}",
              "user suffix": repr(pr.EURUS_USER_SUFFIX), "code suffix": repr(CODE_SUFFIX)}
    if row.scope == "mbpp" and row.setting == "stop":
        return None  # every MBPP function's name: test_mbpp_stops_are_the_scripts_stops
    return values.get(row.setting)


@pytest.mark.parametrize("row", pr.SOURCES, ids=lambda r: f"{r.protocol}-{r.scope}-{r.setting}")
def test_each_table_row_is_the_protocol_and_the_published_line(row):
    expected = actual_value(row)
    if expected is not None:
        assert row.value == expected
    text = require_upstream_file(row.repo, row.path, COMMITS[row.repo])
    assert row.quote in text.splitlines()[row.line - 1], row.citation()


def test_stop_token_ids_follow_the_model_name():
    assert pr.get_protocol("qwen25-math").generation("math500", "Qwen/Qwen2.5-Math-7B").stop_token_ids \
        == (151645, 151643)
    assert pr.get_protocol("prime").generation("olympiadbench", "PRIME-RL/Eurus-2-7B-PRIME") \
        .stop_token_ids == ()
    assert pr.get_protocol("prime").generation("amc").stop == ()


def test_prime_prompt_through_the_cli_is_byte_exact(capsys):
    """The toy tokenizer's chat template joins the messages, so the rendered prompt is the
    published system prompt, the question and the suffix, byte for byte."""
    assert dispatch("prime-eval", ["prompts", "--protocol", "prime", "--benchmarks", "aime2024",
                                   "--limit", "2", "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    questions = load_benchmark("aime2024", limit=2)
    assert [r["id"] for r in records] == [q.id for q in questions]
    system = (upstream(pr.PRIME_REPO, "eval/system_prompt.md") or eurus_system_prompt())
    for record, question in zip(records, questions):
        assert record["prompt"] == (system + question.problem
                                    + "\n\nPresent the answer in LaTex format: \\boxed{Your answer}")


def test_qwen_prompt_is_the_raw_published_template():
    prompt = pr.get_protocol("qwen25-math").prompt(problem("math500"), None)
    assert prompt == ("<|im_start|>system\nPlease reason step by step, and put your final answer "
                      "within \\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is $1+1$?<|im_end|>\n"
                      "<|im_start|>assistant\n")
    yes_no = pr.get_protocol("qwen25-math").prompt(problem("math500", "Is 7 prime?", "Yes"), None)
    assert "Is 7 prime? (Yes or No)<|im_end|>" in yes_no


def test_prime_harness_prompt_strips_the_question():
    tokenizer = toy.build_tokenizer()
    harness = pr.get_protocol("prime").prompt(problem("olympiadbench", "  Find x. \n"), tokenizer)
    script = pr.get_protocol("prime").prompt(problem("math500", "  Find x. \n"), tokenizer)
    assert harness.endswith("Find x.\n\nPresent the answer in LaTex format: \\boxed{Your answer}")
    assert script.endswith("  Find x. \n\n\nPresent the answer in LaTex format: \\boxed{Your answer}")


@pytest.mark.parametrize("response, benchmark, answer, graded", [
    ("so \\boxed{25}.", "aime2024", "25", "25"),
    # 'answer: ' is cut first, then the last box of what is left
    ("Answer: 7, see \\boxed{8} and \\boxed{\\frac{1}{2}}", "aime2024", "\\frac{1}{2}", "\\frac{1}{2}"),
    # the AIME/AMC scripts strip the characters of "The final answer is " and then of ". I hope
    # it is correct." from both ends: \pi loses its i, then its p
    ("\\boxed{\\pi}", "aime2024", "\\", "\\"),
    ("\\boxed{\\pi}", "math500", "\\pi", "\\pi"),
    # a capitalised marker never matches the lower-cased response; MATH's lower-case one does
    ("the answer is: 12", "math500", "12", "12"),
    ("no box, the value is 12", "math500", None, "no box, the value is 12"),
    ("\\fbox{3} then \\boxed{4", "math500", None, "\\fbox{3} then \\boxed{4"),
])
def test_prime_extraction(response, benchmark, answer, graded):
    extraction = pr.get_protocol("prime").extract(response, benchmark)
    assert (extraction.answer, extraction.graded) == (answer, graded)


@pytest.mark.parametrize("response, answer", [
    ("Final Answer: The final answer is $4.5$. I hope it is correct.", "4.5"),
    ("x \\boxed{1} y \\boxed{\\frac{a}{b}}.", "\\frac{a}{b}"),
    ("\\boxed 5$ done", "5"),
    ("So the answer is 3,000.\n", "3,000"),
    ("we get 12 and then 1,234 apples", "1234"),
    ("nothing numeric", None),
])
def test_qwen_extraction(response, answer):
    assert pr.qwen_extract_answer(response) == answer
    assert pr.get_protocol("prime").extract(response, "minerva_math").answer == answer


def test_toy_benchmark_only_under_the_primekit_protocol():
    with pytest.raises(InputError, match="primekit"):
        pr.get_protocol("prime").generation("toy")
    assert pr.get_protocol("primekit").generation("toy").max_new_tokens == 64


def test_per_benchmark_overrides_win_over_options_and_protocol():
    from primekit.arguments import SamplingArguments
    from primekit.eval.commands import _per_benchmark, resolve_generation

    overrides = _per_benchmark({"aime2024": {"n": 16, "temperature": 0.3}})
    sampling = SamplingArguments(max_new_tokens=1000)
    aime = resolve_generation("prime", "aime2024", "m", False, sampling, overrides)
    math = resolve_generation("prime", "math500", "m", False, sampling, overrides)
    assert (aime.n, aime.temperature, aime.max_new_tokens) == (16, 0.3, 1000)
    assert (math.n, math.temperature, math.max_new_tokens, math.stop) == (1, 0.0, 1000, pr.NUMINA_STOPS)
    with pytest.raises(ValueError, match="unknown setting"):
        _per_benchmark('{"aime2024": {"beams": 2}}')
    with pytest.raises(InputError, match="greedy"):
        resolve_generation("prime", "amc", "m", False, SamplingArguments(n=4), {})


def test_sources_table_renders():
    table = pr.sources_markdown("prime")
    assert "eval/Math/math/evaluate_math.py:47 @ 18ad596" in table and "| qwen25-math |" not in table


def test_readme_shows_the_current_sources_table():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert pr.sources_markdown() in readme


@pytest.mark.parametrize("arguments, argv", [
    ("PromptsArguments", ["--protocol", "prime-rl"]),
    ("GradeArguments", ["--input", "outputs.jsonl", "--protocol", "prime-rl"]),
])
def test_an_unknown_protocol_is_an_error_on_the_option(arguments, argv):
    from primekit.config import parse_config
    from primekit.eval import commands

    with pytest.raises(InputError, match=r"^command-line option --protocol: unknown protocol "
                                         r"'prime-rl' \(choose from primekit, prime, qwen25-math\)$"):
        parse_config([getattr(commands, arguments)], argv, prog="prime-eval", description="")


# ----------------------------------------------------------------------------------------------
# code benchmarks under the published protocols


def test_prime_code_prompt_through_the_cli_ends_with_the_code_instruction(capsys):
    assert dispatch("prime-eval", ["prompts", "--protocol", "prime", "--benchmarks", "humaneval,mbpp,leetcode",
                                   "--limit", "1", "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["benchmark"] for r in records] == ["humaneval", "mbpp", "leetcode"]
    instruction = ("\n\nWrite Python code to solve the problem. Present the code in \n```python\nYour code\n"
                   "```\nat the end.")
    for record in records:
        # the toy template joins system and user turns: PRIME's system prompt, question, instruction
        assert record["prompt"].startswith(eurus_system_prompt())
        assert record["prompt"].endswith(instruction)
        assert "LaTex" not in record["prompt"] and "boxed" not in record["prompt"]
    assert "Write a Python function `has_close_elements(numbers: List[float], threshold: float) -> bool`" \
        in records[0]["prompt"]


def test_qwen_protocol_refuses_code_benchmarks_in_one_line(capsys):
    assert dispatch("prime-eval", ["prompts", "--protocol", "qwen25-math", "--benchmarks", "humaneval"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no code benchmarks" in error
    with pytest.raises(InputError):
        pr.get_protocol("qwen25-math").generation("mbpp")


def test_code_budgets_and_stops():
    prime = pr.get_protocol("prime")
    assert (prime.generation("humaneval").max_new_tokens, prime.generation("humaneval").stop) == (4096, ("<|eot_id|>",))
    assert (prime.generation("leetcode").max_new_tokens, prime.generation("leetcode").stop) == (8192, ("<|eot_id|>",))
    assert prime.generation("mbpp").max_new_tokens == 4096 and prime.generation("mbpp").temperature == 0
    assert prime.generation("humaneval", "Qwen/Qwen2.5-7B-Instruct").stop_token_ids == ()  # no qwen2 ids there
    primekit = pr.get_protocol("primekit")
    assert primekit.generation("mbpp").stop == prime.generation("mbpp").stop
    assert primekit.generation("humaneval").stop == ()


def test_mbpp_stops_are_the_scripts_stops():
    """evaluate_mbpp.py:57-61 and :159-161 re-done by hand on the benchmark file: the first
    ``def`` line, lstrip("def ") (a character set), spaces removed, up to "("."""
    from primekit.paths import data_dir

    rows = json.loads((data_dir() / "code/mbpp/new_mbpp.json").read_text())
    expected = []
    for row in rows:
        line = [line for line in row["code"].split("\n") if line.strip().startswith("def ")][0]
        name = line.lstrip("def ").replace(" ", "").split("(")[0]
        expected.append("\n\nprint(" + name)
    stops = pr.get_protocol("prime").generation("mbpp").stop
    assert set(stops) == set(expected) and len(stops) == len(set(expected))
    assert "\n\nprint(ind_char_long" in stops  # find_char_long, as the script spells it
    from primekit.generation import Completion, cut_at_stop
    cut = cut_at_stop(Completion("```python\ndef similar_elements(a, b):\n    return a\n\nprint(similar_elements(1, 2))"
                                 "\n```", False, 9), stops)
    assert cut.text == "```python\ndef similar_elements(a, b):\n    return a" and cut.finished


MATCH_CODE_CASES = [
    "text\n```python\ndef f():\n    return 1\n```\nmore\n```python\nprint(f())\n```",
    "```python\nx = 1\n```\n```python\ny = 2\n```",
    "```\ndef g(): pass\n```\n```\nz = 3\n```",
    "```py\nx = 1\n```",
    "no fence at all\ndef h(): pass",
    "prose first\n```python\ndef cut_off():\n    return",
    "```python\n```",
    "",
]


@pytest.mark.parametrize("path", ["eval/Coding/human_eval/evaluate_human_eval.py", "eval/Coding/mbpp/evaluate_mbpp.py",
                                  "eval/Coding/leetcode/evaluate_leetcode.py"])
def test_code_extraction_is_the_scripts_match_code(path):
    """Each script's own ``match_code`` (taken from the mirrored file at the pinned commit and run
    here) and the prime protocol's code extraction read the same code."""
    import ast
    import re

    source = require_upstream_file(pr.PRIME_REPO, path, pr.PRIME_COMMIT)
    function = next(node for node in ast.parse(source).body
                    if isinstance(node, ast.FunctionDef) and node.name == "match_code")
    namespace = {"re": re}
    exec(compile(ast.Module([function], []), path, "exec"), namespace)
    for response in MATCH_CODE_CASES:
        extraction = pr.get_protocol("prime").extract(response, "humaneval")
        assert extraction.graded == namespace["match_code"](response), response
        assert (extraction.answer is None) == (not extraction.graded.strip())
