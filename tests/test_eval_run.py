"""``prime-eval run`` / ``grade`` end to end on a tiny random model, resuming after a kill, and the
runner's pieces with fake generators and graders."""

from __future__ import annotations

import json

import pytest

from primekit import toy
from primekit.cli import dispatch
from primekit.errors import InputError
from primekit.eval import commands, grading, runner
from primekit.generation import Completion, SamplingSpec
from primekit.io import read_jsonl
from primekit.problems import BenchmarkProblem
from primekit.sampling import (
    SAMPLES_FILE,
    SETTINGS_FILE,
    check_settings,
    generate_and_grade,
    missing_samples,
    open_samples,
    sample_key,
)

REAL_MAKE_GENERATOR = commands.make_generator


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained tiny Qwen2 + toy tokenizer saved like any local model."""
    path = tmp_path_factory.mktemp("tiny-model")
    toy.random_model(seed=0).save_pretrained(path)
    toy.build_tokenizer().save_pretrained(path)
    return str(path)


class CountingGenerator:
    """Wraps a generator; counts generated samples and can stop the run like Ctrl-C after
    ``interrupt_after`` generate calls."""

    def __init__(self, inner, interrupt_after: int | None = None):
        self.inner, self.interrupt_after = inner, interrupt_after
        self.calls, self.samples = 0, 0

    def generate(self, prompts, spec):
        if self.interrupt_after is not None and self.calls == self.interrupt_after:
            raise KeyboardInterrupt
        self.calls += 1
        self.samples += len(prompts) * spec.n
        return self.inner.generate(prompts, spec)


def patch_generator(monkeypatch, interrupt_after=None) -> list[CountingGenerator]:
    made: list[CountingGenerator] = []

    def make(*args, **kwargs):
        made.append(CountingGenerator(REAL_MAKE_GENERATOR(*args, **kwargs), interrupt_after))
        return made[-1]

    monkeypatch.setattr(commands, "make_generator", make)
    return made


def run_cli(*argv: str) -> int:
    return dispatch("prime-eval", list(argv))


def test_run_on_real_benchmarks_resumes_without_regenerating(tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "run"
    argv = ["run", "--model", tiny_model, "--benchmarks", "gsm8k,math500", "--limit", "3",
            "--n", "2", "--temperature", "1", "--max-new-tokens", "4", "--chunk-size", "1",
            "--out", str(out)]
    # killed after 2 generate calls = 2 chunks of one problem x 2 samples
    made = patch_generator(monkeypatch, interrupt_after=2)
    assert run_cli(*argv) == 130
    kept = read_jsonl(out / SAMPLES_FILE)
    assert len(kept) == 4 and made[0].samples == 4
    assert not (out / runner.SUMMARY_FILE).exists()

    made = patch_generator(monkeypatch)
    assert run_cli(*argv) == 0
    assert made[0].samples == 2 * 3 * 2 - 4  # only the missing 8 samples
    records = read_jsonl(out / SAMPLES_FILE)
    assert records[:4] == kept
    assert len({sample_key(r) for r in records}) == 12
    assert {(r["benchmark"], r["problem_id"]) for r in records} >= {("gsm8k", "0"), ("gsm8k", "2")}
    assert all(isinstance(r["correct"], bool) and "pred" in r for r in records)
    summary = json.loads((out / runner.SUMMARY_FILE).read_text())
    assert list(summary["benchmarks"]) == ["gsm8k", "math500"]
    for entry in summary["benchmarks"].values():
        assert entry["num_problems"] == 3 and entry["samples_per_problem"] == 2
        assert {"pass@1", "avg@2", "pass@2", "maj@1", "maj@2"} <= set(entry["metrics"])

    # a third run has nothing left to generate and never loads the model
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded although every sample exists")

    monkeypatch.setattr(commands, "make_generator", no_model)
    assert run_cli(*argv) == 0


def test_without_model_runs_the_toy_policy_on_the_toy_benchmark(tiny_model, tmp_path, monkeypatch):
    asked = []
    real = commands.resolve_model_name

    def resolve(name):
        asked.append(name)
        return tiny_model if name is None else real(name)

    monkeypatch.setattr(commands, "resolve_model_name", resolve)
    out = tmp_path / "toy-run"
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(f"limit: 5\nout: {out}\n")
    assert run_cli("run", "--config", str(recipe), "--limit", "2") == 0  # the command line wins
    assert asked[0] is None  # (later calls resolve the returned path again)
    records = read_jsonl(out / SAMPLES_FILE)
    assert [r["prompt"] for r in records] == [p.prompt for p in toy.test_problems()[:2]]
    assert {r["benchmark"] for r in records} == {"toy"}
    settings = json.loads((out / SETTINGS_FILE).read_text())
    assert settings["benchmarks"]["toy"]["max_new_tokens"] == 64
    assert settings["protocol"] == "primekit" and settings["backend"] == "transformers"
    assert json.loads((out / runner.SUMMARY_FILE).read_text())["model"] == "toy"


def problem(pid: str, answer: str = "7") -> BenchmarkProblem:
    return BenchmarkProblem(id=pid, problem=f"q{pid}", answer=answer, benchmark="unit")


class EchoGenerator:
    """Completion text = the prompt's problem id boxed, with the call's seed; no model."""

    def __init__(self):
        self.specs: list[SamplingSpec] = []

    def generate(self, prompts, spec):
        self.specs.append(spec)
        return [[Completion(f"\\boxed{{{p}}} seed {spec.seed}", True, 3) for _ in range(spec.n)]
                for p in prompts]


def exact_grade(responses, golds):
    preds = [r.split("{")[1].split("}")[0] for r in responses]
    return [(pred, pred == gold) for pred, gold in zip(preds, golds)]


def test_generate_and_grade_fills_only_missing_samples(tmp_path):
    problems = [problem("a", "a"), problem("b"), problem("c")]
    samples = open_samples(tmp_path)
    samples.append({"benchmark": "unit", "problem_id": "b", "sample_index": 0, "completion": "x",
                    "answer": "7", "pred": None, "correct": False})
    assert missing_samples(problems, 2, samples.done) == [
        (problems[0], [0, 1]), (problems[1], [1]), (problems[2], [0, 1])]
    generator = EchoGenerator()
    prompts = {p.id: p.id for p in problems}
    spec = SamplingSpec(n=2, temperature=1.0, seed=5)
    assert generate_and_grade(problems, prompts, generator, spec, samples,
                                     grade=exact_grade, chunk_size=2, show_progress=False) == 5
    # chunk 1 (a, b): a lacks 2 samples and b 1, so two calls; chunk 2 (c): one call
    assert [s.n for s in generator.specs] == [2, 1, 2]
    assert len({s.seed for s in generator.specs}) == 3
    reopened = open_samples(tmp_path)
    assert len(reopened.records) == 6
    a0 = reopened.records[json.dumps(["unit", "a", 0])]
    assert (a0["pred"], a0["correct"], a0["prompt"], a0["finished"]) == ("a", True, "a", True)
    assert generate_and_grade(problems, prompts, generator, spec, reopened,
                                     grade=exact_grade, show_progress=False) == 0


def record(pid: str, index: int, correct: bool, pred: str | None, finished: bool = True) -> dict:
    return {"benchmark": "unit", "problem_id": pid, "sample_index": index, "correct": correct,
            "pred": pred, "finished": finished}


def test_benchmark_summary_hand_example():
    records = [record("p", 0, True, "1"), record("p", 1, False, "2", finished=False),
               record("q", 0, False, None), record("q", 1, False, "3"),
               record("q", 2, True, "9")]  # a third sample beyond n=2 is ignored
    summary = runner.benchmark_summary(["p", "q"], records, 2, n_resamples=50)
    metrics = {name: value["value"] for name, value in summary["metrics"].items()}
    # pass@1 = (1/2 + 0) / 2; pass@2 = (1 + 0) / 2; maj@2: p ties 1-1, first ("1") is right; q's
    # only answer "3" is wrong -> 1/2; maj@1 = first samples (right, no answer) -> 1/2
    assert metrics == pytest.approx({"pass@1": 0.25, "avg@2": 0.25, "pass@2": 0.5, "maj@1": 0.5,
                                     "maj@2": 0.5})
    assert summary["no_answer_rate"] == 0.25 and summary["truncated_rate"] == 0.25
    assert summary["num_problems"] == 2 and summary["samples_per_problem"] == 2
    with pytest.raises(InputError, match="no graded samples"):
        runner.benchmark_summary(["p", "missing"], records, 2)


def test_settings_change_is_refused(tmp_path):
    check_settings(tmp_path, {"model": "m", "temperature": 0.0})
    check_settings(tmp_path, {"model": "m", "temperature": 0.0})
    with pytest.raises(InputError, match="temperature=0.0, not 0.7"):
        check_settings(tmp_path, {"model": "m", "temperature": 0.7})
    # per-benchmark settings: a new benchmark joins, a changed one is refused
    check_settings(tmp_path, {"model": "m", "benchmarks": {"a": {"n": 1}}})
    check_settings(tmp_path, {"model": "m", "benchmarks": {"b": {"n": 4}}})
    assert set(json.loads((tmp_path / SETTINGS_FILE).read_text())["benchmarks"]) == {"a", "b"}
    with pytest.raises(InputError, match="a samples were made with n=1, not 2"):
        check_settings(tmp_path, {"model": "m", "benchmarks": {"a": {"n": 2}}})


def test_grade_command_on_outputs_of_any_model(tmp_path, monkeypatch):
    outputs = tmp_path / "outputs.jsonl"
    outputs.write_text("\n".join(json.dumps(r) for r in [
        {"idx": 1, "gt": "4", "response": ["so \\boxed{4}", "\\boxed{5}", "\\boxed{4}"]},
        {"idx": 2, "gt": 0.5, "response": ["\\boxed{\\frac{1}{2}}", "\\boxed{3}", "no idea"]},
    ]) + "\n")
    out = tmp_path / "graded"
    argv = ["grade", str(outputs), "--response-field", "response", "--answer-field", "gt",
            "--out", str(out)]
    assert run_cli(*argv) == 0
    graded = read_jsonl(out / SAMPLES_FILE)
    assert [r["correct"] for r in graded] == [True, False, True, True, False, False]
    assert [r["pred"] for r in graded][:2] == ["4", "5"]
    entry = json.loads((out / runner.SUMMARY_FILE).read_text())["benchmarks"]["outputs"]
    metrics = {name: value["value"] for name, value in entry["metrics"].items()}
    # problem 1: 2/3 right, maj "4" right; problem 2: 1/3 right, all answers differ -> first wins
    # pass@1 = (2/3 + 1/3) / 2 = 0.5; pass@2 = (1 - C(1,2)/C(3,2) = 1, 1 - C(2,2)/C(3,2) = 2/3)
    assert metrics["pass@1"] == pytest.approx(0.5)
    assert metrics["pass@2"] == pytest.approx((1 + 2 / 3) / 2)
    assert metrics["maj@3"] == pytest.approx(1.0)
    assert entry["truncated_rate"] is None

    def no_grading(*args, **kwargs):
        raise AssertionError("graded again")

    monkeypatch.setattr(grading, "grade_responses", no_grading)
    assert run_cli(*argv) == 0  # everything was graded already


def one_line_error(capsys, *argv: str) -> str:
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line(tmp_path, capsys, tiny_model):
    out = str(tmp_path / "r")
    assert "unknown benchmark 'gsm9k'" in one_line_error(
        capsys, "run", "--model", tiny_model, "--benchmarks", "gsm9k", "--out", out)
    mine = tmp_path / "mine.jsonl"
    mine.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": "2+2"}\n')
    assert f"{mine}:2: field 'answer': missing" in one_line_error(
        capsys, "run", "--model", tiny_model, "--benchmarks", str(mine), "--out", out)
    assert "field 'gold': missing" in one_line_error(
        capsys, "run", "--model", tiny_model, "--benchmarks", str(mine), "--answer-field", "gold",
        "--out", out)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"completion": "x", "answer": "1"}\n{"completion": \n')
    assert f"{broken}:2: malformed JSON" in one_line_error(capsys, "grade", str(broken))
    assert "field 'response': missing" in one_line_error(
        capsys, "grade", str(mine), "--response-field", "response")
    assert "--out is required" in one_line_error(capsys, "run", "--model", tiny_model)
    assert "set --temperature > 0" in one_line_error(capsys, "run", "--n", "4", "--out", out)
    assert "unknown prompt template" in one_line_error(capsys, "run", "--template", "x", "--out", out)
    assert "--temprature" in one_line_error(capsys, "run", "--out", out, "--temprature", "1")


def test_config_file_errors_name_the_line(tmp_path, capsys):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text("limit: 5\ntemprature: 0.7\n")
    assert f"{recipe}:2: unknown option 'temprature'" in one_line_error(capsys, "run", "--config",
                                                                         str(recipe))


def test_prm_reranked_accuracy_sits_beside_pass_at_k(tiny_model, tmp_path, monkeypatch):
    """`--prm` adds bon@N and weighted_maj@N per benchmark; a re-run reads the PRM scores from the
    run folder's cache instead of loading the PRM again."""
    reference = tmp_path / "ref"
    toy.random_model(seed=1).save_pretrained(reference)
    out = tmp_path / "run"
    argv = ["run", "--model", tiny_model, "--benchmarks", "toy", "--limit", "3", "--n", "4",
            "--temperature", "1", "--max-new-tokens", "6", "--out", str(out),
            "--prm", tiny_model, "--prm_ref", str(reference), "--bon_n", "2"]
    assert run_cli(*argv) == 0
    metrics = json.loads((out / runner.SUMMARY_FILE).read_text())["benchmarks"]["toy"]["metrics"]
    assert {"pass@1", "bon@2", "weighted_maj@2"} <= set(metrics)
    # every candidate of an untrained policy is wrong, so every reranking rule scores 0
    assert metrics["bon@2"]["value"] == metrics["pass@1"]["value"] == 0.0

    from primekit.prm import implicit

    monkeypatch.setattr(implicit.ImplicitPRM, "from_pretrained",
                        lambda *a, **k: pytest.fail("the PRM was loaded although scores are cached"))
    assert run_cli(*argv) == 0
    assert run_cli(*argv[:-2], "--bon_n", "5") == 2  # N above --n: one-line error


def test_resume_key_includes_backend_dtype_protocol_and_version(tiny_model, tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["run", "--model", tiny_model, "--benchmarks", "toy", "--limit", "2",
            "--max_new_tokens", "3", "--out", out]
    assert run_cli(*base) == 0
    capsys.readouterr()
    settings = json.loads((tmp_path / "run" / SETTINGS_FILE).read_text())
    import primekit

    assert (settings["dtype"], settings["primekit_version"]) == ("auto", primekit.__version__)
    assert settings["model_revision"].startswith("sha:")
    summary = json.loads((tmp_path / "run" / runner.SUMMARY_FILE).read_text())
    assert summary["grader_version"] and summary["date"] and summary["protocol"] == "primekit"
    assert summary["benchmarks"]["toy"]["generation"]["max_new_tokens"] == 3
    assert "dtype='auto', not 'float32'" in one_line_error(capsys, *base, "--dtype", "float32")
    assert "toy samples were made with max_new_tokens=3, not 4" in one_line_error(
        capsys, *base[:-4], "--max_new_tokens", "4", "--out", out)
    settings["primekit_version"] = "0.0.1"
    (tmp_path / "run" / SETTINGS_FILE).write_text(json.dumps(settings))
    assert "primekit_version='0.0.1'" in one_line_error(capsys, *base)
    assert "protocol 'prime' is a published evaluation" in one_line_error(
        capsys, *base[:-2], "--protocol", "prime", "--out", str(tmp_path / "other"))


def write_graded_run(folder, correct_by_problem: dict[str, list[bool]]):
    """A finished run folder with the given correctness per problem of benchmark 'unit'."""
    samples = open_samples(folder)
    for pid, correct in correct_by_problem.items():
        for index, ok in enumerate(correct):
            samples.append({"benchmark": "unit", "problem_id": pid, "sample_index": index,
                            "correct": ok, "pred": "1"})
    n = len(next(iter(correct_by_problem.values())))
    runner.write_summary(folder, {"benchmarks": {"unit": {"samples_per_problem": n}}})
    return folder


def test_compare_gives_the_paired_difference(tmp_path, capsys):
    a = write_graded_run(tmp_path / "a", {str(i): [i < 10] for i in range(40)})
    b = write_graded_run(tmp_path / "b", {str(i): [i < 30] for i in range(40)})
    report_path = tmp_path / "compare.json"
    assert run_cli("compare", str(a), str(b), "--out", str(report_path),
                   "--bootstrap_resamples", "500") == 0
    result = json.loads(report_path.read_text())["benchmarks"]["unit"]
    # b is right on 20 more of the 40 problems: +50 points
    assert result["difference"] == pytest.approx(0.5) and result["num_problems"] == 40
    assert result["ci_low"] > 0.3 and "+50.0" in capsys.readouterr().out
    assert "give two run folders" in one_line_error(capsys, "compare", str(a))


def test_prompts_command_prints_each_prompt_after_its_header(capsys):
    assert run_cli("prompts", "--benchmarks", "toy", "--limit", "2") == 0
    problems = toy.test_problems()[:2]
    assert capsys.readouterr().out == "".join(f"=== toy toy-{i} ===\n{p.prompt}\n"
                                              for i, p in enumerate(problems))


def test_context_cap_is_on_under_published_protocols(tiny_model, tmp_path, capsys):
    """prime's MATH-500 budget (8192) on a 256-token model: the published protocols cap prompt +
    output at the model's context, as vLLM does; each sample cut there says so."""
    assert commands.resolve_context_cap("auto", "prime", tiny_model) == 256  # max_position_embeddings
    assert commands.resolve_context_cap("auto", "qwen25-math", tiny_model) == 256
    assert commands.resolve_context_cap("auto", "primekit", tiny_model) is None
    assert commands.resolve_context_cap("model", "primekit", tiny_model) == 256
    assert commands.resolve_context_cap("none", "prime", tiny_model) is None
    out = tmp_path / "run"
    # the toy tokenizer makes these two prompts 131 and 157 tokens long: 9 and 0 tokens of room
    assert run_cli("run", "--model", tiny_model, "--protocol", "prime", "--benchmarks", "math500",
                   "--limit", "2", "--context_cap", "140", "--out", str(out)) == 0
    capsys.readouterr()
    samples = sorted(read_jsonl(out / SAMPLES_FILE), key=lambda r: r["problem_id"])
    from primekit.models import load_tokenizer
    tokenizer = load_tokenizer(tiny_model)
    for sample in samples:
        prompt_tokens = len(tokenizer(sample["prompt"], add_special_tokens=False)["input_ids"])
        assert prompt_tokens + sample["num_tokens"] <= max(140, prompt_tokens)
        assert sample["finished"] or sample["truncated"] == "context"
    assert [s["num_tokens"] for s in samples][1] == 0 and samples[1]["truncated"] == "context"
    settings = json.loads((out / SETTINGS_FILE).read_text())
    assert settings["context_cap"] == 140 and settings["benchmarks"]["math500"]["max_new_tokens"] == 8192
    summary = json.loads((out / runner.SUMMARY_FILE).read_text())
    assert summary["benchmarks"]["math500"]["context_truncated_rate"] > 0
    # what makes the run reproducible: problems run of all, the prompts' and template's fingerprints
    entry = summary["benchmarks"]["math500"]
    assert (entry["num_problems"], entry["total_problems"]) == (2, 500)
    assert entry["prompt_sha256"] == commands.prompt_hash([s["prompt"] for s in samples])
    assert len(summary["chat_template_sha256"]) == 16 and summary["context_cap"] == 140
    assert (summary["backend"], summary["dtype"], summary["seed"]) == ("transformers", "auto", 0)
    assert "context_cap must be" in one_line_error(capsys, "run", "--model", tiny_model, "--context_cap", "lots",
                                                   "--out", str(tmp_path / "x"))


def test_run_with_a_published_grader(tiny_model, tmp_path, capsys):
    """``--grader prime`` on the toy task and on a shipped benchmark: PRIME's own code judges (in
    its environment), and summary.json says which grader and sources did."""
    from primekit.eval import published

    try:
        published.grader_python()
    except InputError as error:
        pytest.skip(str(error))
    for benchmarks in ("toy", "math500"):
        out = tmp_path / benchmarks
        assert run_cli("run", "--model", tiny_model, "--benchmarks", benchmarks, "--limit", "2",
                       "--max_new_tokens", "3", "--grader", "prime", "--out", str(out)) == 0
        capsys.readouterr()
        summary = json.loads((out / runner.SUMMARY_FILE).read_text())
        assert summary["grader"] == "prime" and summary["grader_version"] is None
        assert summary["grader_details"]["version"] == "PRIME-RL/PRIME@18ad596"
        assert summary["grader_details"]["rules"][benchmarks].endswith("math script")
        assert all("pred" in r for r in read_jsonl(out / SAMPLES_FILE))
    assert "unknown grader 'nobody'" in one_line_error(capsys, "run", "--model", tiny_model, "--grader", "nobody",
                                                       "--out", str(tmp_path / "x"))
