"""``prime-bon sample`` and ``prime-bon rerank`` (and, with no arguments, the toy demonstration).

``prime-bon sample`` draws N candidates per benchmark problem through the evaluation runner's
resumable generate-and-grade loop and writes them in the standard candidates layout.
``prime-bon rerank FILE`` scores the candidates (cached), then reports Best-of-N accuracy against N
for every reward model and baseline: a Markdown table, a PNG plot, a JSON summary and the
reranked JSONL. ``prime-bon rerank`` with no arguments runs the whole toy pipeline: the toy policy
samples 16 candidates per toy test problem, the toy implicit PRM reranks them, and a table
compares PRM Best-of-N with majority vote and the oracle.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from primekit.arguments import (
    BootstrapArguments,
    GenerationArguments,
    LoadArguments,
    ModelArguments,
    PRMReadingArguments,
    SamplingArguments,
)
from primekit.bon import report, scorers
from primekit.bon import rerank as rr
from primekit.bon.data import load_problems, problems_from_samples
from primekit.config import help_text, leading_positionals, parse_config
from primekit.errors import InputError
from primekit.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from primekit.prm.settings import resolve_reading
from primekit.prm.toy_prm import ensure_toy_prm
from primekit.problems import load_benchmark
from primekit.prompts import check_template, render_prompt
from primekit.statistics import default_ks

RERANK_DESCRIPTION = ("Score Best-of-N candidates once (cached next to the input) and report "
                      "accuracy vs N for PRM / ORM reranking, majority and weighted votes, and the "
                      "oracle. Without arguments: the toy demonstration.")
SAMPLE_DESCRIPTION = "Generate N candidates per benchmark problem (resumable)."
TOY_OUT = "runs/bon-toy"


# what a reward model's forward pass holds by default (a generate call holds 32 sequences)
RERANK_DEFAULTS = {"batch_size": 16}
# Best-of-N needs different candidates: sampled at temperature 1, 16 per problem
SAMPLE_DEFAULTS = {"n": 16, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 1024}


@dataclass
class RerankArguments:
    """Options of ``prime-bon rerank`` besides the implicit PRM's reading options
    (:class:`~primekit.arguments.PRMReadingArguments`), how models are loaded
    (:class:`~primekit.arguments.LoadArguments`) and the intervals
    (:class:`~primekit.arguments.BootstrapArguments`)."""

    input: str | None = field(default=None, metadata=help_text(
        "candidates JSONL (standard layout or Qwen's RM@N layout); may also be given first, "
        "without --input"))
    out: str = field(default="runs/bon", metadata=help_text(
        "output folder: table.md, curve.png, summary.json, reranked.jsonl"))
    step_prm: str | None = field(default=None, metadata=help_text(
        "discriminative step-label PRM (a token-classification model, read in TRL's PRM layout)"))
    step_prm_label: int = field(default=1, metadata=help_text("the step PRM's 'correct step' label"))
    step_separator: str = field(default="\n", metadata=help_text(
        "the step PRM's step separator, as in its training (TRL's default: a newline; escapes \\n "
        "and \\t are understood)"))
    orm: str | None = field(default=None, metadata=help_text(
        "outcome reward model (a sequence-classification model, read in TRL's reward layout)"))
    orm_label: int = field(default=1, metadata=help_text(
        "the ORM's 'correct' label when it has several outputs"))
    shipped: bool = field(default=True, metadata=help_text(
        "also rank by the scores shipped with the file ('scores' / Qwen's 'pred_score')"))
    n_max: int | None = field(default=None, metadata=help_text(
        "largest N; default: the fewest candidates any problem has"))
    trials: int = field(default=256, metadata=help_text(
        "random N-subsets per problem and N (all of them when there are fewer)"))
    seed: int = field(default=0, metadata=help_text("seed of the subsets and the bootstrap"))
    regrade: bool = field(default=False, metadata=help_text(
        "grade candidates with primekit's grader even when the file has correctness labels"))
    cache_dir: str | None = field(default=None, metadata=help_text(
        "folder for the score caches; default: next to the input (the output folder when the "
        "input's folder is read-only)"))

    def __post_init__(self) -> None:
        self.step_separator = self.step_separator.replace("\\n", "\n").replace("\\t", "\t")
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.n_max is not None and self.n_max < 1:
            raise ValueError(f"n_max must be >= 1, got {self.n_max}")
        if not self.step_separator:
            raise ValueError("step_separator must not be empty")


@dataclass
class SampleArguments:
    """Options of ``prime-bon sample`` besides the policy (:class:`~primekit.arguments.ModelArguments`),
    what is sampled (:class:`~primekit.arguments.SamplingArguments`, defaults
    :data:`SAMPLE_DEFAULTS`), where generation runs and how the policy is loaded."""

    out: str | None = field(default=None, metadata=help_text(
        "candidates JSONL to write; its progress lives in <out>.parts/ so a killed run resumes"))
    benchmark: str = field(default="toy", metadata=help_text(
        "registered benchmark (math500, aime2024, amc, ..., toy), a .jsonl/.json file or a datasets name"))
    limit: int | None = field(default=None, metadata=help_text("only the first problems"))
    template: str = field(default="auto", metadata=help_text(
        "prompt template: auto, raw, qwen25-math-cot, eurus (see prime-eval run --help)"))

    def __post_init__(self) -> None:
        if self.out is None:
            raise ValueError("--out is required (the candidates JSONL to write)")


# ----------------------------------------------------------------------------------------------
# sample


def _parts_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def sample(argv: list[str]) -> int:
    args, model, sampling, generation, load, *_ = parse_config(
        [SampleArguments, ModelArguments, SamplingArguments, GenerationArguments, LoadArguments], argv,
        prog="prime-bon sample", description=SAMPLE_DESCRIPTION, defaults=SAMPLE_DEFAULTS)
    path = sample_candidates(args, model, sampling, generation, load)
    print(f"candidates -> {path}")
    return 0


def _candidate_sampling(sampling: SamplingArguments | None) -> SamplingArguments:
    """What is sampled, with Best-of-N's defaults where nothing is given; temperature 0 would give
    every problem N copies of one candidate."""
    sampling = sampling or SamplingArguments()
    sampling = dataclasses.replace(sampling, **{name: value for name, value in SAMPLE_DEFAULTS.items()
                                                if getattr(sampling, name) is None})
    if sampling.temperature <= 0:
        raise InputError("Best-of-N needs different candidates: set a temperature > 0", field="temperature")
    return sampling


def sample_candidates(args: SampleArguments, model: ModelArguments | None = None,
                      sampling: SamplingArguments | None = None,
                      generation: GenerationArguments | None = None, load: LoadArguments | None = None,
                      show_progress: bool = True) -> Path:
    """Generate (only what is missing) and write the candidates file in the standard layout."""
    from primekit.generation import SamplingSpec, make_generator  # loads torch: imported on use
    from primekit.models import load_tokenizer, resolve_model_name  # loads torch: imported on use
    from primekit.sampling import (  # loads torch: imported on use
        check_settings,
        generate_and_grade,
        missing_samples,
        open_samples,
    )

    sampling = _candidate_sampling(sampling)
    generation, load = generation or GenerationArguments(), load or LoadArguments()
    check_template(args.template)
    problems = load_benchmark(args.benchmark, limit=args.limit)
    policy = resolve_model_name((model or ModelArguments()).model)
    tokenizer = load_tokenizer(policy)
    prompts = {p.id: render_prompt(p, args.template, tokenizer) for p in problems}
    parts = _parts_dir(args.out)
    stop = {} if sampling.stop is None else {"stop": list(sampling.stop)}  # unset: as before stops existed
    check_settings(parts, {
        "model": policy, "benchmark": args.benchmark, "template": args.template,
        "temperature": sampling.temperature, "top_p": sampling.top_p,
        "max_new_tokens": sampling.max_new_tokens, "seed": sampling.seed, **stop})
    samples = open_samples(parts)
    spec = SamplingSpec(n=sampling.n, temperature=sampling.temperature, top_p=sampling.top_p,
                        max_new_tokens=sampling.max_new_tokens, seed=sampling.seed,
                        stop=tuple(sampling.stop or ()))
    if missing_samples(problems, sampling.n, samples.done):
        generator = make_generator(policy, generation.backend, dtype=load.dtype, device=load.device,
                                   batch_size=load.batch_size, show_progress=False)
        generate_and_grade(problems, prompts, generator, spec, samples,
                                  show_progress=show_progress)
    ids = {p.id for p in problems}
    mine = [r for r in samples.records.values()
            if r["benchmark"] == problems[0].benchmark and str(r["problem_id"]) in ids]
    by_id = {p.id: p for p in problems_from_samples(mine, sampling.n, {p.id: p.problem for p in problems})}
    atomic_write_jsonl(args.out, [by_id[p.id].to_record() for p in problems])
    return Path(args.out)


# ----------------------------------------------------------------------------------------------
# rerank


def _check_model_path(value: str | None, option: str) -> None:
    """A model that is neither a local path nor a hub-style ``org/name`` is a typo: say so in one
    line before anything is loaded."""
    if value is None:
        return
    path = Path(value).expanduser()
    looks_like_hub = value.count("/") == 1 and not value.startswith((".", "/", "~"))
    if not path.exists() and not looks_like_hub:
        raise InputError(f"{option}: model path does not exist", path=value)


def build_scorers(args: RerankArguments, reading: PRMReadingArguments, load: LoadArguments,
                  has_shipped_scores: bool) -> list:
    """The reward models asked for; they load their weights only when a score is missing from the
    cache."""

    for value, option in ((reading.prm, "--prm"), (reading.prm_ref, "--prm_ref"),
                          (args.step_prm, "--step_prm"), (args.orm, "--orm")):
        if value != "toy":
            _check_model_path(value, option)
    chosen = []
    if reading.prm is not None:
        chosen.append(scorers.ImplicitPRMScorer.from_settings(
            resolve_reading(reading), dtype=load.dtype, device=load.device, batch_size=load.batch_size))
    if args.step_prm is not None:
        chosen.append(scorers.TokenClassificationPRMScorer.from_pretrained(
            args.step_prm, dtype=load.dtype, device=load.device, step_mode=reading.step_mode or "auto",
            separator=args.step_separator, positive_label=args.step_prm_label,
            prm_context=reading.prm_context, batch_size=load.batch_size))
    if args.orm is not None:
        chosen.append(scorers.SequenceClassificationORMScorer.from_pretrained(
            args.orm, dtype=load.dtype, device=load.device, positive_label=args.orm_label,
            prm_context=reading.prm_context, batch_size=load.batch_size))
    if args.shipped and has_shipped_scores:
        chosen.append(scorers.ShippedScores())
    return chosen


def rerank(argv: list[str]) -> int:
    if not argv:
        return toy_demo()
    args, reading, load, bootstrap, *_ = parse_config(
        [RerankArguments, PRMReadingArguments, LoadArguments, BootstrapArguments],
        leading_positionals(argv, "--input"), prog="prime-bon rerank", description=RERANK_DESCRIPTION,
        defaults=RERANK_DEFAULTS)
    if args.input is None:
        raise InputError("give a candidates file: prime-bon rerank cands.jsonl [options]")
    result = run_rerank(args, reading, load, bootstrap)
    _print_result(result)
    return 0


@dataclass
class RerankResult:
    summary: dict
    methods: list
    ns: list[int]
    curves: dict
    out: Path
    title: str
    confidence: float


def run_rerank(args: RerankArguments, reading: PRMReadingArguments | None = None,
               load: LoadArguments | None = None, bootstrap: BootstrapArguments | None = None,
               show_progress: bool = True) -> RerankResult:
    """Load, score (cached), evaluate every rule, and write the output folder."""

    reading = reading or PRMReadingArguments()
    load = load or LoadArguments(**RERANK_DEFAULTS)
    bootstrap = bootstrap or BootstrapArguments()
    problems = load_problems(args.input)
    has_shipped = all(p.scores is not None for p in problems)
    chosen = build_scorers(args, reading, load, has_shipped)
    outcomes = rr.problem_outcomes(problems, regrade=args.regrade)
    fewest, most = rr.candidate_counts(outcomes)
    n_max = args.n_max or fewest
    if n_max > fewest:
        raise InputError(f"n_max {n_max} is more than the {fewest} candidates of the smallest problem")
    out = Path(args.out)
    methods = list(rr.BASELINES)
    step_scores: dict[str, list] = {}
    for scorer in chosen:
        cache = None
        if not hasattr(scorer, "precomputed"):
            path = rr.default_cache_path(args.input, scorer.name, scorer.identity(),
                                         cache_dir=args.cache_dir, fallback_dir=out)
            cache = rr.ScoreCache(path, scorer.identity())
        step_scores[scorer.name] = rr.score_problems(problems, scorer, cache,
                                                     batch_size=load.batch_size,
                                                     show_progress=show_progress)
        methods += rr.scorer_methods(scorer, step_scores[scorer.name], reading.aggregates)
    ns = default_ks(n_max)
    curves = rr.bon_curves(outcomes, methods, ns, trials=args.trials, seed=args.seed)
    summary = rr.curve_summary(curves, confidence=bootstrap.confidence,
                               n_resamples=bootstrap.bootstrap_resamples, seed=args.seed)
    title = f"Best-of-N on {Path(args.input).name} ({len(problems)} problems)"
    counts = f"{fewest}" if fewest == most else f"{fewest}-{most}"
    atomic_write_text(out / "table.md", f"{title}, {counts} candidates each; accuracy % "
                      f"[{bootstrap.confidence:.0%} bootstrap interval over problems]\n\n"
                      + report.markdown_table(summary, methods, ns) + "\n")
    report.plot_curves(summary, methods, ns, out / "curve.png", title)
    atomic_write_json(out / "summary.json", {
        "input": str(args.input), "num_problems": len(problems), "candidates": [fewest, most],
        "ns": ns, "trials": args.trials, "seed": args.seed, "regrade": args.regrade,
        "scorers": {s.name: s.identity() for s in chosen},
        "methods": {m.key: {"label": m.label, "by_n": {str(n): summary[m.key][n] for n in ns}}
                    for m in methods}})
    picks = rr.selections(outcomes, methods)
    atomic_write_jsonl(out / "reranked.jsonl", [
        {**problem.to_record(), "preds": outcome.preds,
         "correct": [bool(c) for c in outcome.correct],
         "step_scores": {name: steps[index] for name, steps in step_scores.items()},
         "selected": pick, "selected_correct": {key: bool(outcome.correct[i]) for key, i in pick.items()}}
        for index, (problem, outcome, pick) in enumerate(zip(problems, outcomes, picks))])
    return RerankResult(summary, methods, ns, curves, out, title, bootstrap.confidence)


def _print_result(result: RerankResult) -> None:

    report.print_table(result.summary, result.methods, result.ns, result.title, result.confidence)
    print(f"table, plot, summary and reranked candidates -> {result.out}/")


# ----------------------------------------------------------------------------------------------
# the toy demonstration


def toy_demo(out: str = TOY_OUT, num_problems: int = 200, n: int = 16) -> int:
    """Toy policy samples ``n`` candidates per toy test problem, the toy PRM reranks them."""
    candidates = Path(out) / "candidates.jsonl"
    sample_candidates(SampleArguments(out=str(candidates), benchmark="toy", limit=num_problems),
                      sampling=SamplingArguments(n=n, max_new_tokens=64),
                      load=LoadArguments(dtype="float32", batch_size=256))
    result = run_rerank(RerankArguments(input=str(candidates), out=out),
                        PRMReadingArguments(prm=str(ensure_toy_prm()), aggregate="min_q,min_step,last"),
                        LoadArguments(dtype="float32", batch_size=64))
    _print_result(result)
    return 0
