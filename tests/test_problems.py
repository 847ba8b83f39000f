"""Benchmark registry over the shared data, local files, datasets folders, and prompt templates."""

from __future__ import annotations

import json
import math

import pytest

from primekit import toy
from primekit.errors import InputError
from primekit.problems import FieldNames, answer_text, gsm8k_answer, latex_list_answer, load_benchmark
from primekit.prompts import eurus_system_prompt, render_prompt

# Qwen's chat format, as a Jinja chat template for the toy tokenizer
QWEN_LIKE_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                      "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("value,expected", [
    (27.0, "27"), (2.5, "2.5"), (142, "142"), ("025", "25"), ("0", "0"), (" 1,600", "1600"),
    ("-007", "-7"), ("\\frac{1}{2}", "\\frac{1}{2}"), ("1,2", "1,2"), ("(1, 8)", "(1, 8)"),
])
def test_answer_text(value, expected):
    assert answer_text(value) == expected


@pytest.mark.parametrize("value", [True, None, ["1"], "  ", math.nan])
def test_answer_text_rejects(value):
    with pytest.raises(ValueError):
        answer_text(value)


def test_source_formats():
    assert gsm8k_answer("4 + 5 = <<4+5=9>>9 eggs.\n#### 1,234") == "1234"
    with pytest.raises(ValueError, match="####"):
        gsm8k_answer("no final marker")
    assert latex_list_answer(["$69$,$84$"]) == "69,84"
    assert latex_list_answer(["$\\frac{1}{2}$"]) == "\\frac{1}{2}"
    assert latex_list_answer(["$\\$5$"]) == "\\$5"  # an escaped dollar sign is text, kept


def test_registered_benchmarks_read_the_shared_data():
    counts = {"aime2024": 30, "amc": 83, "aime24": 30, "amc23": 40, "math500": 500,
              "minerva_math": 272, "olympiadbench": 675, "gsm8k": 1319}
    loaded = {name: load_benchmark(name) for name in counts}
    assert {name: len(problems) for name, problems in loaded.items()} == counts
    assert all("2024_AIME_" in p.metadata["url"] for p in loaded["aime2024"])
    assert loaded["gsm8k"][0].answer == "18"
    assert loaded["gsm8k"][0].problem.startswith("Janet")
    assert loaded["amc23"][0].answer == "27"  # JSON 27.0
    assert loaded["amc"][0].answer == "142"  # JSON 142.0
    assert loaded["math500"][0].answer == "4" and loaded["math500"][0].id == "test/algebra/4.json"
    padded = [p for p in loaded["aime24"] if p.metadata["raw_answer"] == "025"]
    assert [p.answer for p in padded] == ["25"]
    multi = [p for p in loaded["olympiadbench"] if p.metadata["raw_answer"] == ["$69$,$84$"]]
    assert [p.answer for p in multi] == ["69,84"]
    # PRIME's AIME 2024 rows and Qwen's aime24 are the same 30 problems with the same answers
    assert sorted(p.answer for p in loaded["aime2024"]) == sorted(p.answer for p in loaded["aime24"])
    for problems in loaded.values():
        assert len({p.id for p in problems}) == len(problems)


def test_limit_keeps_the_first_problems():
    first = load_benchmark("math500", limit=3)
    assert [p.id for p in first] == [p.id for p in load_benchmark("math500")[:3]]
    with pytest.raises(InputError, match="limit"):
        load_benchmark("math500", limit=0)


def test_toy_benchmark_uses_the_raw_toy_prompts():
    problems = load_benchmark("toy", limit=4)
    expected = toy.test_problems()[:4]
    assert [p.problem for p in problems] == [p.prompt for p in expected]
    assert [p.answer for p in problems] == [p.answer for p in expected]
    assert render_prompt(problems[0], "auto", toy.build_tokenizer()) == expected[0].prompt


def test_local_jsonl_with_custom_fields(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"q": "1+1?", "gold": 2.0, "key": "a"}) + "\n\n"
                    + json.dumps({"q": "2+2?", "gold": "4", "key": "b"}) + "\n")
    problems = load_benchmark(str(path), fields=FieldNames(problem="q", answer="gold", id="key"))
    assert [(p.id, p.problem, p.answer, p.benchmark) for p in problems] == [
        ("a", "1+1?", "2", "mine"), ("b", "2+2?", "4", "mine")]


def test_local_json_list_uses_usual_fields(tmp_path):
    path = tmp_path / "set.json"
    path.write_text(json.dumps([{"question": "x?", "answer": "1"}, {"question": "y?", "answer": "2"}]))
    problems = load_benchmark(str(path))
    assert [(p.id, p.problem, p.answer) for p in problems] == [("0", "x?", "1"), ("1", "y?", "2")]


def test_bad_input_names_file_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b"}\n')
    with pytest.raises(InputError) as err:
        load_benchmark(str(path))
    assert str(err.value) == f"{path}:2: field 'answer': missing"
    path.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed JSON"):
        load_benchmark(str(path))
    path.write_text('{"problem": "a", "answer": "1"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: field 'solution': missing"):
        load_benchmark(str(path), fields=FieldNames(answer="solution"))
    path.write_text('{"problem": "a", "answer": true}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: field 'answer': expected a string or a number"):
        load_benchmark(str(path))


def test_unknown_and_missing_benchmarks(tmp_path):
    with pytest.raises(InputError, match="unknown benchmark 'mathh500'.*math500"):
        load_benchmark("mathh500")
    with pytest.raises(InputError, match="file not found"):
        load_benchmark(str(tmp_path / "nope.jsonl"))


def test_duplicate_ids_are_refused(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": 1, "problem": "a", "answer": "1"}\n{"id": 1, "problem": "b", "answer": "2"}\n')
    with pytest.raises(InputError, match="id '1' twice"):
        load_benchmark(str(path))


def test_datasets_folder_loads_offline(tmp_path):
    folder = tmp_path / "my_set"
    folder.mkdir()
    (folder / "test.jsonl").write_text(json.dumps({"problem": "3-1?", "answer": 2}) + "\n")
    problems = load_benchmark(str(folder), split="test")
    assert [(p.id, p.problem, p.answer, p.benchmark) for p in problems] == [("0", "3-1?", "2", "my_set")]
    with pytest.raises(InputError, match="cannot load benchmark .* split 'train'"):
        load_benchmark(str(folder), split="train")


def test_chat_templates_render_the_published_prompts():
    tokenizer = toy.build_tokenizer()
    tokenizer.chat_template = QWEN_LIKE_TEMPLATE
    problem = load_benchmark("math500", limit=1)[0]
    # Qwen2.5-Math's "qwen25-math-cot" prompt, written out
    assert render_prompt(problem, "qwen25-math-cot", tokenizer) == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>user\nIf $2^8=4^x$, what is the value of $x$?<|im_end|>\n"
        "<|im_start|>assistant\n")
    assert render_prompt(problem, "auto", tokenizer) == render_prompt(problem, "qwen25-math-cot",
                                                                      tokenizer)
    eurus = render_prompt(problem, "eurus", tokenizer)
    # the published system_prompt.md: a literal backslash-n, not a line break, and no final newline
    assert eurus.startswith("<|im_start|>system\n\\nWhen tackling complex reasoning tasks")
    assert eurus_system_prompt().endswith("Next action: [NEXT ACTION NAME]\\n")
    assert "\n" not in eurus_system_prompt() and len(eurus_system_prompt().encode()) == 414
    assert ("<|im_start|>user\nIf $2^8=4^x$, what is the value of $x$?\n\nPresent the answer in "
            "LaTex format: \\boxed{Your answer}<|im_end|>\n<|im_start|>assistant\n") in eurus
    assert render_prompt(problem, "raw") == problem.problem


def test_chat_template_needs_a_tokenizer_that_has_one():
    problem = load_benchmark("gsm8k", limit=1)[0]
    tokenizer = toy.build_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(InputError, match="--template raw"):
        render_prompt(problem, "qwen25-math-cot", tokenizer)
    with pytest.raises(InputError, match="unknown prompt template"):
        render_prompt(problem, "alpaca", tokenizer)


def test_college_math_and_gaokao2023en():
    college = load_benchmark("college_math")
    assert len(college) == 2818 and college[0].answer == "10-4 n"  # "$10-4 n$" without its $
    assert len({p.id for p in college}) == 2818  # question_number repeats: row numbers are ids
    gaokao = load_benchmark("gaokao2023en")
    assert len(gaokao) == 385 and gaokao[0].answer == "\\{x|-2\\leq x < 1\\}"
    assert sum(p.answer == "" for p in gaokao) == 2  # empty upstream: kept, never graded right
    from primekit.problems import breakdown

    assert breakdown(college[0]) == {"subject": "college_math.algebra"}
    math500 = load_benchmark("math500", limit=1)[0]
    assert breakdown(math500) == {"level": str(math500.metadata["level"]),
                                  "subject": math500.metadata["type"]}
