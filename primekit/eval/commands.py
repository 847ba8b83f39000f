"""``prime-eval`` sub-commands: run, grade, leaderboard, processbench.

Each parses its options (``--config recipe.yaml`` plus ``--key value`` overrides), checks every
input before any model is loaded, and leaves results in a folder that a re-run resumes.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from primekit.config import help_text, leading_positionals, parse_config
from primekit.errors import InputError
from primekit.eval import benchmarks as bench
from primekit.eval.generate import SamplingSpec, make_generator
from primekit.eval import runner

TOY_MAX_NEW_TOKENS, MAX_NEW_TOKENS = 64, 4096


def _split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


@dataclass
class SummaryArguments:
    ks: str | None = field(default=None, metadata=help_text(
        "comma-separated k values for pass@k and maj@k (default: powers of two below n, and n)"))
    confidence: float = field(default=0.95, metadata=help_text("confidence level of the bootstrap "
                                                           "intervals over problems"))
    bootstrap_resamples: int = field(default=1000, metadata=help_text("bootstrap resamples"))
    grade_processes: int | None = field(default=None, metadata=help_text(
        "worker processes for grading (default: the grader's choice)"))

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.bootstrap_resamples < 1:
            raise ValueError("bootstrap_resamples must be >= 1")
        try:
            self.k_values = [int(k) for k in _split_list(self.ks)] or None
        except ValueError:
            raise ValueError(f"ks must be comma-separated integers, got '{self.ks}'") from None
        if self.k_values and min(self.k_values) < 1:
            raise ValueError("every k must be >= 1")

    def grader(self):
        return lambda responses, golds: runner.grade_responses(responses, golds,
                                                               processes=self.grade_processes)

    def summary_options(self) -> dict[str, Any]:
        return {"ks": self.k_values, "confidence": self.confidence,
                "n_resamples": self.bootstrap_resamples}


@dataclass
class RunArguments:
    model: str | None = field(default=None, metadata=help_text(
        "policy: a hub name or a local folder (default: the toy policy, trained once and cached)"))
    benchmarks: str | None = field(default=None, metadata=help_text(
        "comma-separated benchmarks: registered names (" + ", ".join(bench.benchmark_names())
        + "), .jsonl/.json files or datasets names (default: toy without --model, else "
        + ",".join(bench.PRIME_BENCHMARKS) + ")"))
    out: str | None = field(default=None, metadata=help_text(
        "run folder for samples.jsonl, settings.json and summary.json (required; re-running "
        "the same command resumes it)"))
    n: int = field(default=1, metadata=help_text("samples per problem"))
    temperature: float = field(default=0.0, metadata=help_text("sampling temperature; 0 = greedy"))
    top_p: float = field(default=1.0, metadata=help_text("nucleus sampling top-p"))
    max_new_tokens: int | None = field(default=None, metadata=help_text(
        f"generation budget (default: {TOY_MAX_NEW_TOKENS} for the toy policy or the toy "
        f"benchmark, {MAX_NEW_TOKENS} otherwise, as in the PRIME evaluation)"))
    seed: int = field(default=0, metadata=help_text("sampling seed"))
    template: str = field(default="auto", metadata=help_text(
        "prompt template: " + "; ".join(f"{k}: {v}" for k, v in bench.TEMPLATES.items())))
    limit: int | None = field(default=None, metadata=help_text("only the first N problems of each "
                                                           "benchmark"))
    backend: str = field(default="transformers", metadata=help_text(
        "generation back end: transformers or vllm (pip install primekit[vllm])"))
    dtype: str = field(default="auto", metadata=help_text("model dtype: auto, bfloat16, float16, "
                                                      "float32"))
    device: str | None = field(default=None, metadata=help_text("device (default: cuda if available)"))
    batch_size: int = field(default=32, metadata=help_text("sequences per generate call "
                                                       "(transformers back end)"))
    chunk_size: int = field(default=64, metadata=help_text(
        "problems generated, graded and saved at a time (what a killed run can lose at most)"))
    problem_field: str | None = field(default=None, metadata=help_text(
        "problem field of .jsonl/.json/datasets benchmarks (default: problem or question)"))
    answer_field: str | None = field(default=None, metadata=help_text(
        "gold answer field of .jsonl/.json/datasets benchmarks (default: answer or "
        "expected_answer)"))
    id_field: str | None = field(default=None, metadata=help_text(
        "problem id field of .jsonl/.json/datasets benchmarks (default: id, idx or the row "
        "number)"))
    split: str = field(default="test", metadata=help_text("split of datasets benchmarks"))
    label: str | None = field(default=None, metadata=help_text(
        "row name in leaderboards (default: the run folder's name)"))
    prm: str | None = field(default=None, metadata=help_text(
        "implicit PRM that reranks the samples: adds bon@N (its Best-of-N pick) and "
        "weighted_maj@N (its reward-weighted vote) beside pass@k and maj@k"))
    prm_ref: str | None = field(default=None, metadata=help_text(
        "the PRM's reference model (default: the one recorded with the PRM)"))
    bon_n: int | None = field(default=None, metadata=help_text(
        "N for the PRM metrics (default: --n); N < --n averages random N-subsets"))
    bon_aggregate: str = field(default="min", metadata=help_text(
        "how step rewards rank a response: min, last, mean or sum"))

    def __post_init__(self) -> None:
        if self.bon_n is not None and not 1 <= self.bon_n <= self.n:
            raise ValueError(f"bon_n must be between 1 and --n {self.n}, got {self.bon_n}")
        if self.out is None:
            raise ValueError("--out is required: the run folder that holds (and resumes) results")
        if self.n < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("n and limit must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("need temperature >= 0 and 0 < top_p <= 1")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("greedy decoding (temperature 0) gives n identical samples; "
                             "set --temperature > 0 for --n > 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        bench.check_template(self.template)
        if self.backend not in {"transformers", "vllm"}:
            raise ValueError(f"unknown backend '{self.backend}' (choose transformers or vllm)")


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from primekit.eval.leaderboard import metric_sort_key

    metrics = sorted({m for entry in summary["benchmarks"].values() for m in entry["metrics"]},
                     key=metric_sort_key)
    table = Table(title=f"{summary.get('label', '')}: {summary.get('model', '')} "
                        f"(%, {summary.get('confidence', 0.95):.0%} bootstrap CI)")
    for column in ["benchmark", "problems", "n", *metrics, "no answer", "truncated"]:
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for name, entry in summary["benchmarks"].items():
        cells = []
        for metric in metrics:
            value = entry["metrics"].get(metric)
            cells.append("–" if value is None else f"{100 * value['value']:.1f} "
                         f"[{100 * value['ci_low']:.1f}, {100 * value['ci_high']:.1f}]")
        truncated = entry.get("truncated_rate")
        table.add_row(bench.benchmark_title(name), str(entry["num_problems"]),
                      str(entry["samples_per_problem"]), *cells,
                      f"{100 * entry['no_answer_rate']:.1f}",
                      "–" if truncated is None else f"{100 * truncated:.1f}")
    console = Console()
    console.width = max(console.width, 80 + 20 * len(metrics))  # keep "v [lo, hi]" on one line
    console.print(table)


def _finish(out: Path, summary: dict[str, Any], samples_path: Path) -> int:
    path = runner.write_summary(out, summary)
    _print_summary(summary)
    print(f"samples: {samples_path}\nsummary: {path}")
    return 0


def _grader_for(name: str, options: SummaryArguments):
    """Code benchmarks run their answers' programs in the sandbox; math ones use the grader."""
    from primekit.eval import code_benchmarks

    return code_benchmarks.make_code_grader() if code_benchmarks.is_code_benchmark(name) else options.grader()


def run(argv: list[str]) -> int:
    """Generate and grade a model on benchmarks; resumable."""
    args, options, _ = parse_config([RunArguments, SummaryArguments], argv, prog="prime-eval run",
                                    description=run.__doc__)
    names = _split_list(args.benchmarks) or (list(bench.PRIME_BENCHMARKS) if args.model else
                                              [bench.TOY])
    if options.k_values and max(options.k_values) > args.n:
        raise InputError(f"k={max(options.k_values)} is larger than --n {args.n}")
    fields = bench.FieldNames(args.problem_field, args.answer_field, args.id_field)
    problem_sets = {}
    for name in names:
        problems = bench.load_benchmark(name, fields=fields, split=args.split, limit=args.limit)
        if not problems:
            raise InputError(f"benchmark '{name}' has no problems")
        if problems[0].benchmark in problem_sets:
            raise InputError(f"two benchmarks are named '{problems[0].benchmark}'; rename a file")
        problem_sets[problems[0].benchmark] = problems
    is_toy = args.model in (None, "toy") or set(problem_sets) == {bench.TOY}
    spec = SamplingSpec(n=args.n, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                        max_new_tokens=args.max_new_tokens or (TOY_MAX_NEW_TOKENS if is_toy
                                                               else MAX_NEW_TOKENS))
    from primekit.models import load_tokenizer, resolve_model_name

    model_name = resolve_model_name(args.model)
    out = Path(args.out)
    runner.check_settings(out, {"model": model_name, "template": args.template,
                                "temperature": spec.temperature, "top_p": spec.top_p,
                                "max_new_tokens": spec.max_new_tokens, "seed": spec.seed})
    samples = runner.open_samples(out)
    tokenizer = load_tokenizer(model_name)
    prompts = {name: {p.id: bench.render_prompt(p, args.template, tokenizer) for p in problems}
               for name, problems in problem_sets.items()}
    to_do = sum(len(indices) for problems in problem_sets.values()
                for _, indices in runner.missing_samples(problems, spec.n, samples.done))
    if to_do:
        generator = make_generator(model_name, backend=args.backend, dtype=args.dtype,
                                   device=args.device, batch_size=args.batch_size,
                                   show_progress=False)
        for name, problems in problem_sets.items():
            runner.generate_and_grade(problems, prompts[name], generator, spec, samples,
                                      grade=_grader_for(name, options), chunk_size=args.chunk_size)
    summary = {"label": args.label or out.resolve().name, "model": args.model or "toy",
               "model_path": model_name, "template": args.template,
               "sampling": asdict(spec), "confidence": options.confidence, "benchmarks": {}}
    records = list(samples.records.values())
    for name, problems in problem_sets.items():
        summary["benchmarks"][name] = runner.benchmark_summary(
            [p.id for p in problems], [r for r in records if r["benchmark"] == name], spec.n,
            seed=spec.seed, **options.summary_options())
    if args.prm is not None:
        _add_bon_metrics(summary, args, problem_sets, records, out)
    return _finish(out, summary, samples.path)


def _add_bon_metrics(summary: dict[str, Any], args: RunArguments,
                     problem_sets: dict[str, list], records: list[dict[str, Any]], out: Path) -> None:
    """PRM-reranked accuracy per benchmark, so "policy + PRM" is a leaderboard row of its own.
    PRM scores are cached in the run folder: a re-run loads no PRM."""
    from primekit.bon import rerank
    from primekit.bon.data import problems_from_samples
    from primekit.bon.scorers import ImplicitPRMScorer

    scorer = ImplicitPRMScorer.from_pretrained(args.prm, args.prm_ref, device=args.device,
                                               dtype=args.dtype)
    cache = rerank.ScoreCache(rerank.cache_file(out, scorer.name, scorer.identity()),
                              scorer.identity())
    n = args.bon_n or args.n
    for name, problems in problem_sets.items():
        wanted = {p.id for p in problems}
        samples = [r for r in records if r["benchmark"] == name and r["problem_id"] in wanted
                   and r["sample_index"] < args.n]
        metrics = rerank.bon_metrics(problems_from_samples(samples), scorer, n,
                                     aggregate=args.bon_aggregate, cache=cache, seed=args.seed)
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

    def __post_init__(self) -> None:
        if self.input is None:
            raise ValueError("give the JSONL file to grade: prime-eval grade FILE.jsonl")


def _responses(record: dict[str, Any], field_name: str, path: str, line: int) -> list[str]:
    from primekit.io import require_field

    value = require_field(record, field_name, path=path, line=line, kind=(str, list))
    values = [value] if isinstance(value, str) else value
    if not values or not all(isinstance(item, str) for item in values):
        raise InputError("expected a string or a non-empty list of strings", path=path, line=line,
                         field=field_name)
    return values


def read_outputs(args: GradeArguments) -> list[dict[str, Any]]:
    """Flatten a file of model outputs into sample records (benchmark, problem_id, sample_index,
    completion, answer), numbering the samples of each problem in file order."""
    from primekit.io import iter_jsonl, require_field

    path = Path(args.input)
    counts: dict[tuple[str, str], int] = {}
    records = []
    for line, record in iter_jsonl(path):
        benchmark = str(record.get(args.benchmark_field or "benchmark") or path.stem)
        if args.benchmark_field:
            benchmark = str(require_field(record, args.benchmark_field, path=path, line=line))
        id_field = args.id_field or next((f for f in ("problem_id", "id", "idx") if f in record),
                                         None)
        problem_id = str(require_field(record, id_field, path=path, line=line)
                         if id_field else line)
        try:
            gold = bench.answer_text(require_field(record, args.answer_field, path=path, line=line))
        except ValueError as err:
            raise InputError(str(err), path=path, line=line, field=args.answer_field) from None
        for response in _responses(record, args.response_field, path=str(path), line=line):
            index = counts.get((benchmark, problem_id), 0)
            counts[(benchmark, problem_id)] = index + 1
            sample = {"benchmark": benchmark, "problem_id": problem_id, "sample_index": index,
                      "completion": response, "answer": gold, "source_line": line}
            if isinstance(record.get("finished"), bool):
                sample["finished"] = record["finished"]
            records.append(sample)
    if not records:
        raise InputError("no records to grade", path=path)
    return records


def grade(argv: list[str]) -> int:
    """Grade an existing JSONL of model outputs (any model) and summarize it like a run."""
    args, options, _ = parse_config([GradeArguments, SummaryArguments],
                                    leading_positionals(argv, "--input"), prog="prime-eval grade",
                                    description=grade.__doc__)
    records = read_outputs(args)
    out = Path(args.out) if args.out else Path(args.input).with_name(Path(args.input).stem + "-graded")
    runner.check_settings(out, {"input": str(Path(args.input).resolve()),
                                "response_field": args.response_field,
                                "answer_field": args.answer_field})
    samples = runner.open_samples(out)
    runner.grade_pending(records, samples, grade=options.grader())
    graded = list(samples.records.values())
    summary = {"label": args.label or out.name, "model": str(args.input), "confidence":
               options.confidence, "benchmarks": {}}
    for name in dict.fromkeys(record["benchmark"] for record in records):
        ids = list(dict.fromkeys(r["problem_id"] for r in records if r["benchmark"] == name))
        summary["benchmarks"][name] = runner.benchmark_summary(
            ids, [r for r in graded if r["benchmark"] == name], None, **options.summary_options())
    return _finish(out, summary, samples.path)


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
    from primekit.eval.leaderboard import write_leaderboard

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


@dataclass
class ProcessBenchArguments:
    prm: str | None = field(default=None, metadata=help_text(
        "implicit PRM: hub name or local folder of a causal LM (required)"))
    ref: str | None = field(default=None, metadata=help_text(
        "reference model of the implicit PRM (default: the PRM's own choice)"))
    beta: float = field(default=0.05, metadata=help_text("implicit reward scale beta"))
    splits: str | None = field(default=None, metadata=help_text(
        "comma-separated ProcessBench splits to report (default: every split in the data folder "
        "among gsm8k, math, olympiadbench, omnimath)"))
    tune_split: str = field(default="gsm8k", metadata=help_text(
        "split the threshold is tuned on (ProcessBench practice: GSM8K)"))
    threshold: float | None = field(default=None, metadata=help_text(
        "use this threshold instead of tuning one"))
    aggregation: str = field(default="step", metadata=help_text(
        "compare each step's reward (step) or the running implicit Q, the sum so far (q)"))
    separator: str = field(default="\n\n", metadata=help_text("text placed between steps"))
    template: str = field(default="qwen25-math-cot", metadata=help_text(
        "how the problem is rendered as the prompt: raw, qwen25-math-cot or eurus"))
    limit: int | None = field(default=None, metadata=help_text(
        "quick runs: per split, the first N/2 erroneous and N/2 error-free samples"))
    out: str | None = field(default=None, metadata=help_text(
        "folder for step_rewards.jsonl (resumable) and processbench.json (required)"))

    def __post_init__(self) -> None:
        if self.prm is None or self.out is None:
            raise ValueError("--prm and --out are required")
        if self.aggregation not in {"step", "q"}:
            raise ValueError(f"aggregation must be step or q, got '{self.aggregation}'")
        if bench.check_template(self.template) == "auto":
            raise ValueError("choose an explicit --template for ProcessBench")


def processbench(argv: list[str]) -> int:
    """First-error-step F1 of an implicit PRM on ProcessBench."""
    from primekit.eval import processbench as pb
    from primekit.io import ResumableJsonl, atomic_write_json

    (args, _) = parse_config([ProcessBenchArguments], argv, prog="prime-eval processbench",
                             description=processbench.__doc__)
    splits = _split_list(args.splits) or pb.available_splits()
    tune = [] if args.threshold is not None else [args.tune_split]
    data = {split: pb.load_split(split, args.limit) for split in dict.fromkeys(tune + splits)}
    out = Path(args.out)
    runner.check_settings(out, {"prm": args.prm, "ref": args.ref, "beta": args.beta,
                                "template": args.template, "separator": args.separator})
    cache = ResumableJsonl(out / "step_rewards.jsonl", key=lambda r: f"{r['split']}/{r['id']}")
    done = cache.done
    pending = [s for samples in data.values() for s in samples if f"{s.split}/{s.id}" not in done]
    if pending:
        from tqdm.auto import tqdm

        from primekit.models import load_tokenizer
        from primekit.prm.implicit import ImplicitPRM

        tokenizer = load_tokenizer(args.prm)
        prm = ImplicitPRM.from_pretrained(args.prm, ref_path=args.ref, beta=args.beta)
        scorer = pb.implicit_prm_scorer(
            prm, lambda text: bench.render_text(text, args.template, tokenizer), args.separator)
        for sample in tqdm(pending, desc="score steps", unit="sample"):
            try:
                step_rewards = pb.score_steps(sample, scorer)
            except ValueError as err:
                raise InputError(f"{err}; try another --separator") from None
            cache.append({"split": sample.split, "id": sample.id, "step_rewards": step_rewards})
    rewards = {split: [cache.records[f"{split}/{s.id}"]["step_rewards"] for s in samples]
               for split, samples in data.items()}
    threshold, tuned_f1 = args.threshold, None
    if threshold is None:
        threshold, tuned_f1 = pb.tune_threshold(
            rewards[args.tune_split], [s.label for s in data[args.tune_split]], args.aggregation)
    report = {"prm": args.prm, "ref": args.ref, "beta": args.beta, "aggregation": args.aggregation,
              "threshold": threshold, "tuned_on": None if tune == [] else args.tune_split,
              "tuned_f1": tuned_f1, "splits": {}}
    for split in splits:
        score = pb.evaluate_split(data[split], rewards[split], threshold, args.aggregation)
        report["splits"][split] = asdict(score)
    atomic_write_json(out / "processbench.json", report)
    _print_processbench(report)
    return 0


def _print_processbench(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ProcessBench: {report['prm']} ({report['aggregation']}, threshold "
                        f"{report['threshold']:.4g})")
    for column in ["split", "erroneous", "error-free", "error acc %", "correct acc %", "F1 %"]:
        table.add_column(column, justify="left" if column == "split" else "right")
    for split, score in report["splits"].items():
        table.add_row(split, str(score["num_error"]), str(score["num_correct"]),
                      *("–" if score[key] is None else f"{100 * score[key]:.1f}"
                        for key in ("error_accuracy", "correct_accuracy", "f1")))
    Console().print(table)
