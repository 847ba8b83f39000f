"""``prime-eval`` sub-commands: run, grade, prompts, compare, leaderboard, processbench.

Each parses its options (``--config recipe.yaml`` plus ``--key value`` overrides), checks every
input before any model is loaded, and leaves results in a folder that a re-run resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from primekit.arguments import (
    BootstrapArguments,
    GenerationArguments,
    LoadArguments,
    ModelArguments,
    PRMReadingArguments,
    SamplingArguments,
)
from primekit.bon import rerank
from primekit.bon.data import problems_from_samples
from primekit.bon.scorers import ImplicitPRMScorer
from primekit.config import help_text, leading_positionals, parse_config
from primekit.errors import InputError
from primekit.eval import provenance, runner
from primekit.eval.console import print_comparison, print_summary
from primekit.eval.grading import all_graders, grader_for, read_outputs
from primekit.eval.leaderboard import write_leaderboard
from primekit.eval.processbench import command as processbench_command
from primekit.eval.protocols import DEFAULT_PROTOCOL, PROTOCOLS, Generation, get_protocol
from primekit.eval.published import GRADERS, grader_record, write_disagreements
from primekit.generation import SamplingSpec, make_generator
from primekit.io import atomic_write_json
from primekit.models import load_tokenizer, resolve_model_name
from primekit.prm.settings import resolve_reading
from primekit.problems import PRIME_BENCHMARKS, TOY, FieldNames, benchmark_names, load_benchmark
from primekit.prompts import TEMPLATES, check_template
from primekit.sampling import check_settings, generate_and_grade, grade_pending, missing_samples, open_samples
from primekit.statistics import paired_bootstrap
from primekit.toy import build_tokenizer
from primekit.verifiers.math import GRADER_VERSION


def _split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


@dataclass
class SummaryArguments(BootstrapArguments):
    ks: str | None = field(default=None, metadata=help_text(
        "comma-separated k values for pass@k and maj@k (default: powers of two below n, and n)"))
    grade_processes: int | None = field(default=None, metadata=help_text(
        "worker processes for grading (default: the grader's choice)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            self.k_values = [int(k) for k in _split_list(self.ks)] or None
        except ValueError:
            raise ValueError(f"ks must be comma-separated integers, got '{self.ks}'") from None
        if self.k_values and min(self.k_values) < 1:
            raise ValueError("every k must be >= 1")

    def summary_options(self) -> dict[str, Any]:
        return {"ks": self.k_values, "confidence": self.confidence,
                "n_resamples": self.bootstrap_resamples}


OVERRIDABLE = ("n", "temperature", "top_p", "max_new_tokens", "stop")


def _check_graders(names: list[str]) -> None:
    unknown = [name for name in names if name not in GRADERS]
    if unknown or not names:
        raise ValueError(f"unknown grader '{(unknown or [''])[0]}' (choose from {', '.join(GRADERS)})")
    if len(set(names)) != len(names):
        raise ValueError(f"a grader is named twice in {','.join(names)}")


def _check_protocol(name: str) -> None:
    """The ``--protocol`` option's check (a ValueError, which the parser reports against it)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol '{name}' (choose from {', '.join(PROTOCOLS)})")


@dataclass
class EvalArguments:
    """Which benchmarks, under which protocol, into which run folder."""

    benchmarks: str | None = field(default=None, metadata=help_text(
        "comma-separated benchmarks: registered names (" + ", ".join(benchmark_names())
        + "), .jsonl/.json files or datasets names (default: toy without --model, else "
        + ",".join(PRIME_BENCHMARKS) + ")"))
    protocol: str = field(default=DEFAULT_PROTOCOL, metadata=help_text(
        "evaluation protocol: prompt, budgets, stop strings and answer extraction per benchmark. "
        + "; ".join(f"{name}: {p.description}" for name, p in PROTOCOLS.items())))
    template: str = field(default="auto", metadata=help_text(
        "prompt template of --protocol primekit: "
        + "; ".join(f"{k}: {v}" for k, v in TEMPLATES.items())))
    limit: int | None = field(default=None, metadata=help_text(
        "only the first N problems of each benchmark"))
    problem_field: str | None = field(default=None, metadata=help_text(
        "problem field of .jsonl/.json/datasets benchmarks (default: problem or question)"))
    answer_field: str | None = field(default=None, metadata=help_text(
        "gold answer field of .jsonl/.json/datasets benchmarks (default: answer or "
        "expected_answer)"))
    id_field: str | None = field(default=None, metadata=help_text(
        "problem id field of .jsonl/.json/datasets benchmarks (default: id, idx or the row "
        "number)"))
    split: str = field(default="test", metadata=help_text("split of datasets benchmarks"))

    def __post_init__(self) -> None:
        _check_protocol(self.protocol)
        check_template(self.template)
        if self.protocol != DEFAULT_PROTOCOL and self.template != "auto":
            raise ValueError(f"template applies to --protocol {DEFAULT_PROTOCOL}; protocol "
                             f"{self.protocol} fixes its own prompt")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


def benchmark_sizes(args: EvalArguments, problem_sets: dict[str, list]) -> dict[str, int]:
    """How many problems each benchmark has in all (``--limit`` runs only the first of them)."""
    if args.limit is None:
        return {name: len(problems) for name, problems in problem_sets.items()}
    fields = FieldNames(args.problem_field, args.answer_field, args.id_field)
    names = _split_list(args.benchmarks) or [problems[0].benchmark for problems in problem_sets.values()]
    return {problems[0].benchmark: len(load_benchmark(spec, fields=fields, split=args.split))
            for spec, problems in zip(names, problem_sets.values())}


def prompt_hash(prompts: list[str]) -> str:
    """A fingerprint of the exact prompts (chat template, system prompt and suffix included)."""
    return hashlib.sha256("\0".join(prompts).encode("utf-8")).hexdigest()[:16]


def load_problem_sets(args: EvalArguments, model: str | None = None) -> dict[str, list]:
    """Problems of each benchmark (default: toy for the toy policy, PRIME's five else)."""
    names = _split_list(args.benchmarks) or (list(PRIME_BENCHMARKS) if model else [TOY])
    fields = FieldNames(args.problem_field, args.answer_field, args.id_field)
    problem_sets: dict[str, list] = {}
    for name in names:
        problems = load_benchmark(name, fields=fields, split=args.split, limit=args.limit)
        if not problems:
            raise InputError(f"benchmark '{name}' has no problems")
        if problems[0].benchmark in problem_sets:
            raise InputError(f"two benchmarks are named '{problems[0].benchmark}'; rename a file")
        problem_sets[problems[0].benchmark] = problems
    return problem_sets


@dataclass
class RunArguments(EvalArguments):
    out: str | None = field(default=None, metadata=help_text(
        "run folder for samples.jsonl, settings.json and summary.json (required; re-running "
        "the same command resumes it)"))
    per_benchmark: str | None = field(default=None, metadata=help_text(
        "per-benchmark sampling settings that override the protocol and the options above: in "
        "YAML a mapping such as {aime2024: {n: 16, temperature: 0.3}}, on the command line the "
        "same as JSON; keys: " + ", ".join(OVERRIDABLE)))
    chunk_size: int = field(default=64, metadata=help_text(
        "problems generated, graded and saved at a time (what a killed run can lose at most)"))
    label: str | None = field(default=None, metadata=help_text(
        "row name in leaderboards (default: the run folder's name)"))
    bon_n: int | None = field(default=None, metadata=help_text(
        "N for the PRM metrics (with --prm: bon@N, its Best-of-N pick, and weighted_maj@N, its "
        "reward-weighted vote; default: --n); N < --n averages random N-subsets"))
    grader: str = field(default="primekit", metadata=help_text(
        "who reads and judges the answers: primekit (the protocol's extraction, primekit's "
        "grader), prime (PRIME's own scripts and copy of the Qwen2.5-Math harness) or qwen "
        "(Qwen2.5-Math's harness); prime and qwen run the published code at its pinned commit in "
        "their own environment (make grader-env; see primekit.eval.published)"))
    context_cap: str = field(default="auto", metadata=help_text(
        "prompt + output tokens at most, as vLLM caps them at the model's context (samples cut "
        "there are recorded with truncated: context): auto (the model's context, "
        "max_position_embeddings, under the published protocols prime and qwen25-math; no cap "
        "under primekit), model (the model's context), none, or a number of tokens"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.out is None:
            raise ValueError("--out is required: the run folder that holds (and resumes) results")
        self.overrides = _per_benchmark(self.per_benchmark)
        _check_graders([self.grader])
        if self.context_cap not in ("auto", "model", "none") and not (
                self.context_cap.isdigit() and int(self.context_cap) > 0):
            raise ValueError(f"context_cap must be auto, model, none or a positive number of tokens, "
                             f"got '{self.context_cap}'")


def resolve_context_cap(option: str, protocol: str, model_name: str) -> int | None:
    """The ``--context_cap`` in tokens: the model's context (its config's
    ``max_position_embeddings``, what vLLM takes as ``max_model_len``) under ``auto`` for the
    published protocols and under ``model``, a given number, or None (no cap)."""
    if option == "none" or (option == "auto" and protocol == DEFAULT_PROTOCOL):
        return None
    if option.isdigit():
        return int(option)
    from transformers import AutoConfig  # loads torch; needed only to read a model's context

    context = getattr(AutoConfig.from_pretrained(model_name), "max_position_embeddings", None)
    if not isinstance(context, int) or context < 1:
        raise InputError(f"{model_name}: its config has no max_position_embeddings to cap the context "
                         "at; give --context_cap N or none")
    return context


def _per_benchmark(value: Any) -> dict[str, dict[str, Any]]:
    """``per_benchmark`` from YAML (a mapping) or the command line (JSON), checked."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ValueError(f"per_benchmark must be a JSON object ({err.msg})") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError("per_benchmark must map benchmark names to {setting: value} mappings")
    for name, settings in value.items():
        unknown = set(settings) - set(OVERRIDABLE)
        if unknown:
            raise ValueError(f"per_benchmark {name}: unknown setting(s) {', '.join(sorted(unknown))}"
                             f" (choose from {', '.join(OVERRIDABLE)})")
        SamplingArguments(**{k: list(v) if k == "stop" else v for k, v in settings.items()})
    return {name: {k: tuple(v) if k == "stop" else v for k, v in settings.items()}
            for name, settings in value.items()}


def resolve_generation(protocol: str, name: str, model_name: str, toy_model: bool,
                       sampling: SamplingArguments, overrides: dict[str, dict[str, Any]]
                       ) -> Generation:
    """A benchmark's sampling settings: the protocol's, then the options, then its
    ``per_benchmark`` entry."""
    generation = get_protocol(protocol).generation(name, model_name, toy_model)
    generation = dataclasses.replace(generation, **sampling.overrides(),
                                     **overrides.get(name, {}))
    if generation.temperature == 0 and generation.n > 1:
        raise InputError(f"{name}: greedy decoding (temperature 0) gives n identical samples; "
                         "set --temperature > 0 for --n > 1")
    return generation


def _finish(out: Path, summary: dict[str, Any], samples_path: Path) -> int:
    path = runner.write_summary(out, summary)
    print_summary(summary)
    print(f"samples: {samples_path}\nsummary: {path}")
    return 0


def run(argv: list[str]) -> int:
    """Generate and grade a model on benchmarks under an evaluation protocol; resumable."""
    model_args, generation_args, load, sampling, args, options, reading, *_ = parse_config(
        [ModelArguments, GenerationArguments, LoadArguments, SamplingArguments, RunArguments,
         SummaryArguments, PRMReadingArguments], argv, prog="prime-eval run", description=run.__doc__)
    problem_sets = load_problem_sets(args, model_args.model)
    protocol = get_protocol(args.protocol)
    toy_model = model_args.model in (None, "toy")
    # the model's name as given, as the published scripts test it ("qwen2" in the name)
    generations = {name: resolve_generation(args.protocol, name, model_args.model or "",
                                            toy_model, sampling, args.overrides)
                   for name in problem_sets}
    fewest_n = min(g.n for g in generations.values())
    if options.k_values and max(options.k_values) > fewest_n:
        raise InputError(f"k={max(options.k_values)} is larger than n={fewest_n}")
    if args.bon_n is not None and not 1 <= args.bon_n <= fewest_n:
        raise InputError(f"bon_n must be between 1 and n {fewest_n}, got {args.bon_n}")
    out = Path(args.out)
    model_name = resolve_model_name(model_args.model)
    context_cap = resolve_context_cap(args.context_cap, args.protocol, model_name)
    context = {"model_revision": provenance.model_revision(model_name),
               "protocol": args.protocol, "template": args.template, "context_cap": context_cap,
               "grader": args.grader,
               "backend": generation_args.backend, "dtype": load.dtype,
               "seed": sampling.seed, "primekit_version": provenance.primekit_version()}
    check_settings(out, {"model": model_name, **context, "benchmarks": {
        name: g.to_json() for name, g in generations.items()}})
    samples = open_samples(out)
    tokenizer = load_tokenizer(model_name)
    prompts = {name: {p.id: protocol.prompt(p, tokenizer, args.template) for p in problems}
               for name, problems in problem_sets.items()}
    specs = {name: SamplingSpec(n=g.n, temperature=g.temperature, top_p=g.top_p,
                                max_new_tokens=g.max_new_tokens, seed=sampling.seed, stop=g.stop,
                                stop_token_ids=g.stop_token_ids, max_model_len=context_cap)
             for name, g in generations.items()}
    to_do = sum(len(indices) for name, problems in problem_sets.items()
                for _, indices in missing_samples(problems, specs[name].n, samples.done))
    if to_do:
        generator = make_generator(model_name, backend=generation_args.backend,
                                   dtype=load.dtype, device=load.device,
                                   batch_size=load.batch_size, show_progress=False)
        for name, problems in problem_sets.items():
            with grader_for(name, args.protocol, args.grader, options.grade_processes) as grade:
                generate_and_grade(problems, prompts[name], generator, specs[name], samples,
                                          grade=grade, chunk_size=args.chunk_size)
    sizes = benchmark_sizes(args, problem_sets)
    template = getattr(tokenizer, "chat_template", None)
    summary = {"label": args.label or out.resolve().name, "model": model_args.model or "toy",
               "model_path": model_name, **context,
               "chat_template_sha256": prompt_hash([template]) if isinstance(template, str) else None,
               "grader_version": GRADER_VERSION if args.grader == "primekit" else None,
               "grader_details": grader_record(args.grader, list(problem_sets)),
               "date": provenance.today(), "confidence": options.confidence, "benchmarks": {}}
    records = list(samples.records.values())
    for name, problems in problem_sets.items():
        summary["benchmarks"][name] = {
            **runner.benchmark_summary(
                [p.id for p in problems], [r for r in records if r["benchmark"] == name],
                specs[name].n, seed=sampling.seed, **options.summary_options()),
            "generation": generations[name].to_json(),
            "total_problems": sizes[name], "prompt_sha256": prompt_hash(list(prompts[name].values()))}
    if reading.prm is not None:
        _add_bon_metrics(summary, args, reading, problem_sets, records, out, specs, load, sampling.seed)
    return _finish(out, summary, samples.path)


def _add_bon_metrics(summary: dict[str, Any], args: RunArguments, reading: PRMReadingArguments,
                     problem_sets: dict[str, list], records: list[dict[str, Any]], out: Path,
                     specs: dict[str, SamplingSpec], load: LoadArguments, seed: int) -> None:
    """PRM-reranked accuracy per benchmark (by the first of ``--aggregate``), so "policy + PRM" is a
    leaderboard row of its own. PRM scores are cached in the run folder: a re-run loads no PRM."""
    scorer = ImplicitPRMScorer.from_settings(resolve_reading(reading), device=load.device,
                                             dtype=load.dtype)
    cache = rerank.ScoreCache(rerank.cache_file(out, scorer.name, scorer.identity()),
                              scorer.identity())
    for name, problems in problem_sets.items():
        wanted = {p.id for p in problems}
        samples = [r for r in records if r["benchmark"] == name and r["problem_id"] in wanted
                   and r["sample_index"] < specs[name].n]
        texts = {p.id: p.problem for p in problems}  # the PRM reads the problem, not the policy prompt
        metrics = rerank.bon_metrics(problems_from_samples(samples, problem_texts=texts), scorer,
                                     args.bon_n or specs[name].n, aggregate=reading.aggregates[0],
                                     cache=cache, seed=seed)
        summary["benchmarks"][name]["metrics"].update(metrics)


@dataclass
class GradeArguments:
    input: str | None = field(default=None, metadata=help_text(
        "JSONL of model outputs (the first argument): one record per sample, or per problem with "
        "a list of samples"))
    response_field: str = field(default="completion", metadata=help_text(
        "field holding the response text, or a list of responses"))
    answer_field: str = field(default="answer", metadata=help_text("field holding the gold answer"))
    id_field: str | None = field(default=None, metadata=help_text(
        "problem id field (default: problem_id, id or idx, else the line number); records "
        "sharing an id are samples of one problem"))
    benchmark_field: str | None = field(default=None, metadata=help_text(
        "benchmark name field (default: benchmark if present, else the file name)"))
    out: str | None = field(default=None, metadata=help_text(
        "output folder for the graded samples.jsonl and summary.json (default: <input>-graded)"))
    label: str | None = field(default=None, metadata=help_text("row name in leaderboards"))
    protocol: str = field(default=DEFAULT_PROTOCOL, metadata=help_text(
        "whose answer extraction reads the responses: " + ", ".join(PROTOCOLS)
        + " (see prime-eval run --help)"))
    graders: str = field(default="primekit", metadata=help_text(
        "comma-separated graders (primekit, prime, qwen; see prime-eval run --grader): the first "
        "decides each sample's correct; with more than one, every sample keeps each grader's "
        "verdict and disagreements.md lists the samples they judge differently"))

    def __post_init__(self) -> None:
        if self.input is None:
            raise ValueError("give the JSONL file to grade: prime-eval grade FILE.jsonl")
        _check_protocol(self.protocol)
        self.grader_names = _split_list(self.graders)
        _check_graders(self.grader_names)


def grade(argv: list[str]) -> int:
    """Grade an existing JSONL of model outputs (any model) and summarize it like a run."""
    args, options, _ = parse_config([GradeArguments, SummaryArguments],
                                    leading_positionals(argv, "--input"), prog="prime-eval grade",
                                    description=grade.__doc__)
    records = read_outputs(args.input, response_field=args.response_field, answer_field=args.answer_field,
                           id_field=args.id_field, benchmark_field=args.benchmark_field)
    out = Path(args.out) if args.out else Path(args.input).with_name(Path(args.input).stem + "-graded")
    context = {"input": str(Path(args.input).resolve()), "response_field": args.response_field,
               "answer_field": args.answer_field, "protocol": args.protocol,
               "grader": args.grader_names[0], "graders": args.grader_names,
               "primekit_version": provenance.primekit_version()}
    check_settings(out, context)
    samples = open_samples(out)
    benchmarks = list(dict.fromkeys(record["benchmark"] for record in records))
    for name in benchmarks:
        with all_graders(name, args.protocol, args.grader_names, options.grade_processes) as grade_fn:
            grade_pending([r for r in records if r["benchmark"] == name], samples, grade=grade_fn)
    graded = list(samples.records.values())
    summary = {"label": args.label or out.name, "model": str(args.input), **context,
               "grader_version": GRADER_VERSION if args.grader_names[0] == "primekit" else None,
               "grader_details": grader_record(args.grader_names[0], benchmarks),
               "date": provenance.today(), "confidence": options.confidence, "benchmarks": {}}
    for name in benchmarks:
        ids = list(dict.fromkeys(r["problem_id"] for r in records if r["benchmark"] == name))
        summary["benchmarks"][name] = runner.benchmark_summary(
            ids, [r for r in graded if r["benchmark"] == name], None, **options.summary_options())
    if len(args.grader_names) > 1:
        for name, accuracy in write_disagreements(out, graded, args.grader_names).items():
            summary["benchmarks"][name]["by_grader"] = accuracy
    return _finish(out, summary, samples.path)


@dataclass
class PromptsArguments(EvalArguments):
    format: str = field(default="text", metadata=help_text(
        "text: each prompt after a '=== benchmark id ===' line; jsonl: one JSON record per "
        "prompt (exact bytes, escapes and all)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format not in ("text", "jsonl"):
            raise ValueError(f"format must be text or jsonl, got '{self.format}'")


def prompts(argv: list[str]) -> int:
    """Print the exact prompts a protocol gives the model (rendered with --model's tokenizer;
    the toy tokenizer when no model is given)."""
    model_args, args, *_ = parse_config([ModelArguments, PromptsArguments], argv,
                                    prog="prime-eval prompts", description=prompts.__doc__)
    problem_sets = load_problem_sets(args, model_args.model)
    if model_args.model in (None, "toy"):
        tokenizer = build_tokenizer()  # the toy policy's own tokenizer, without training it
    else:
        tokenizer = load_tokenizer(model_args.model)
    protocol = get_protocol(args.protocol)
    for name, problems in problem_sets.items():
        for problem in problems:
            prompt = protocol.prompt(problem, tokenizer, args.template)
            if args.format == "jsonl":
                print(json.dumps({"benchmark": name, "id": problem.id, "prompt": prompt},
                                 ensure_ascii=False))
            else:
                print(f"=== {name} {problem.id} ===")
                print(prompt)
    return 0


@dataclass
class CompareArguments(BootstrapArguments):
    runs: list[str] = field(default_factory=list, metadata=help_text(
        "two run folders, given first: prime-eval compare RUN_A RUN_B"))
    out: str | None = field(default=None, metadata=help_text(
        "also write the comparison as JSON to this file"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.runs) != 2:
            raise ValueError(f"give two run folders (RUN_A RUN_B), got {len(self.runs)}")


def compare(argv: list[str]) -> int:
    """Paired bootstrap difference of pass@1 (RUN_B - RUN_A) per benchmark, on the problems
    both runs share."""
    args, *_ = parse_config([CompareArguments], leading_positionals(argv, "--runs"),
                           prog="prime-eval compare", description=compare.__doc__)
    scores = [runner.run_problem_scores(path) for path in args.runs]
    report = {"runs": args.runs, "confidence": args.confidence, "benchmarks": {}}
    for name in [b for b in scores[0] if b in scores[1]]:
        shared = [pid for pid in scores[0][name] if pid in scores[1][name]]
        if not shared:
            continue
        report["benchmarks"][name] = paired_bootstrap(
            [scores[0][name][pid] for pid in shared], [scores[1][name][pid] for pid in shared],
            confidence=args.confidence, n_resamples=args.bootstrap_resamples)
    if not report["benchmarks"]:
        raise InputError("the two runs share no benchmark problems")
    if args.out:
        atomic_write_json(args.out, report)
    print_comparison(report)
    return 0


@dataclass
class LeaderboardArguments:
    runs: list[str] = field(default_factory=list, metadata=help_text(
        "run folders (or summary.json files); given first, e.g. prime-eval leaderboard runs/*"))
    out: str = field(default="report", metadata=help_text(
        "folder for leaderboard.md, leaderboard.html and the PNG charts"))
    reported: bool = field(default=True, metadata=help_text(
        "add the published PRIME-paper rows (marked reported)"))


def leaderboard(argv: list[str]) -> int:
    """Markdown, self-contained HTML and PNG charts from run folders."""
    (args, _) = parse_config([LeaderboardArguments], leading_positionals(argv, "--runs"),
                             prog="prime-eval leaderboard", description=leaderboard.__doc__)
    runs = []
    for path in args.runs:
        if Path(path).is_dir() and not (Path(path) / runner.SUMMARY_FILE).is_file():
            # a glob such as runs/* also matches runs that are still going
            print(f"prime-eval leaderboard: skipping {path} (no {runner.SUMMARY_FILE} yet)",
                  file=sys.stderr)
        else:
            runs.append(path)
    for name, path in write_leaderboard(runs, args.out, include_reported=args.reported).items():
        print(f"{name}: {path}")
    return 0


def processbench(argv: list[str]) -> int:
    """First-error-step F1 of an implicit PRM on ProcessBench (see primekit.eval.processbench)."""
    return processbench_command(argv)
