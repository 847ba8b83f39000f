"""``prime-prm train``, ``prime-prm score`` and ``prime-prm convert``.

``prime-prm train`` with no arguments trains an implicit PRM in the toy world: the toy policy is
both the PRM's starting point and its reference, and the data are the policy's own samples on toy
problems, graded. ``--config recipes/eurus_prm_stage1.yaml`` gives the published EurusPRM Stage-1
run instead. ``prime-prm score`` writes token, step and sequence rewards for a JSONL of responses,
resuming where a killed run stopped. ``prime-prm convert`` turns published PRM training data
(EurusPRM-Stage1-Data) into the training JSONL.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm.auto import tqdm

from primekit.arguments import LoadArguments, PRMReadingArguments
from primekit.command_line import run_command
from primekit.config import leading_positionals, parse_config
from primekit.errors import InputError
from primekit.io import ResumableJsonl, atomic_write_jsonl, iter_jsonl, require_field
from primekit.prm.config import ImplicitPRMConfig, PRMModelConfig
from primekit.prm.data import check_prompt, eurus_stage1_sample, iter_data_rows
from primekit.prm.implicit import ImplicitPRM
from primekit.prm.reading import Query, aggregate, prm_prompt
from primekit.prm.settings import resolve_reading
from primekit.prm.training import train_prm

TRAIN_DESCRIPTION = ("Train an implicit PRM (a causal LM read against a frozen reference) on outcome "
                     "labels or preference pairs. Without options: the toy PRM.")
SCORE_DESCRIPTION = ("Token, step and sequence rewards of an implicit PRM for a JSONL of "
                     "{prompt or problem, response} records (resumable).")


def train(argv: list[str]) -> int:
    config, model_args, *_ = parse_config([ImplicitPRMConfig, PRMModelConfig], argv, prog="prime-prm train",
                                          description=TRAIN_DESCRIPTION)
    summary = train_prm(config, model_args)
    if summary is not None:
        _print_summary(summary)
    return 0


def _print_summary(summary: dict) -> None:
    table = Table(title="implicit PRM", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")  # long paths wrap instead of being cut
    for name, value in summary.items():
        if value is not None:
            table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)


@dataclass
class ScoreArguments:
    """Options of ``prime-prm score`` besides the PRM reading and loading options."""

    input: str = field(metadata={"help": "JSONL of records with 'response' and 'prompt' (text read "
                                         "verbatim, or chat messages) and/or 'problem' (read per "
                                         "--prm_context); other fields are copied to the output"})
    out: str = field(metadata={"help": "output JSONL: each input record plus the steps read, token_rewards, "
                                       "step_rewards, q_values, sequence_reward and the --aggregate "
                                       "scores; a killed run resumes"})

# what a PRM forward pass holds by default (a generate call holds 32 sequences)
SCORE_DEFAULTS = {"batch_size": 16}


def _score_prompt(record: dict, prm_context: str, *, path: str, line: int):
    """What the PRM reads before this record's response: the problem through ``prm_context``
    when the record has one, else its prompt as given."""
    prompt = record.get("prompt")
    if prompt is not None:
        check_prompt(prompt, path=path, line=line)
    problem = record.get("problem")
    if problem is None:
        if prompt is None:
            raise InputError("give 'prompt' or 'problem'", path=path, line=line, field="prompt")
        return prompt
    if not isinstance(problem, str) or not problem.strip():
        raise InputError("expected non-empty text", path=path, line=line, field="problem")
    try:
        return prm_prompt(Query(problem, prompt if isinstance(prompt, str) else None), prm_context)
    except InputError as err:
        raise InputError(err.reason, path=path, line=line, field=err.field) from None


def _read_score_input(path: str, prm_context: str = "chat") -> list[tuple[str, dict, object]]:
    """``(resume key, record, PRM prompt)`` per input line; the key changes when the line's text
    does, so a stale partial result for an edited input is recomputed rather than reused."""
    items = []
    for line, record in iter_jsonl(path):
        prompt = _score_prompt(record, prm_context, path=path, line=line)
        response = require_field(record, "response", path=path, line=line, kind=str)
        if not response.strip():
            raise InputError("a response with no text has no steps to read", path=path, line=line,
                             field="response")
        digest = hashlib.sha1(json.dumps([prompt, response]).encode()).hexdigest()[:16]
        items.append((f"{line}:{digest}", record, prompt))
    return items


def partial_path(out: Path, settings) -> Path:
    """Where ``prime-prm score`` keeps finished results until the output is complete: one file per
    reading setting, so a re-run with another coef or step mode never mixes in stale rewards."""
    identity = hashlib.sha1(json.dumps(settings.__dict__, sort_keys=True).encode()).hexdigest()[:8]
    return out.with_name(f".{out.name}.{identity}.partial")


def score(argv: list[str]) -> int:
    args, reading, load, *_ = parse_config([ScoreArguments, PRMReadingArguments, LoadArguments], argv,
                                       prog="prime-prm score", description=SCORE_DESCRIPTION,
                                       defaults=SCORE_DEFAULTS)
    items = _read_score_input(args.input, reading.prm_context)
    settings = resolve_reading(reading)
    out = Path(args.out)
    partial = ResumableJsonl(partial_path(out, settings), key=lambda record: record["key"])
    todo = [(key, prompt, record) for key, record, prompt in items if key not in partial.done]
    if todo:
        prm = ImplicitPRM.from_settings(settings, dtype=load.dtype, device=load.device,
                                        batch_size=load.batch_size)
        chunk_size = 8 * load.batch_size  # results reach the disk every few batches
        with tqdm(total=len(items), initial=len(items) - len(todo), desc="score", unit="response") as bar:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start:start + chunk_size]
                results = prm.rewards([prompt for _, prompt, _ in chunk], [r["response"] for _, _, r in chunk])
                for (key, _, _), result in zip(chunk, results):
                    partial.append({
                        "key": key, "steps": result.steps.texts,
                        "token_rewards": [round(x, 6) for x in result.token_rewards.tolist()],
                        "step_rewards": [round(x, 6) for x in result.step_rewards],
                        "q_values": [round(x, 6) for x in result.q_values],
                        "sequence_reward": round(result.sequence_reward, 6),
                        "scores": {how: round(aggregate(result.step_rewards, how), 6)
                                   for how in reading.aggregates}})
                bar.update(len(chunk))
    rows = []
    for key, record, _ in items:
        rewards = {name: value for name, value in partial.records[key].items() if name != "key"}
        rows.append({**record, **rewards})
    atomic_write_jsonl(out, rows)
    partial.path.unlink(missing_ok=True)
    print(f"scored {len(rows)} responses -> {out} (coef {settings.coef:g}, steps: {settings.step_mode}, "
          f"prompt: {settings.prm_context})")
    return 0


CONVERT_FORMATS = {
    "eurus-stage1": "PRIME-RL/EurusPRM-Stage1-Data rows: 'response' = chat messages ending with the "
                    "assistant's answer, 'label' = its correctness (true/false or 1/0); .jsonl, .json "
                    "or .parquet",
}
CONVERT_DESCRIPTION = ("Turn published PRM training data into prime-prm train's outcome JSONL "
                       "{prompt (chat messages), completion, label}.")


@dataclass
class ConvertArguments:
    """Options of ``prime-prm convert``."""

    input: str | None = field(default=None, metadata={
        "help": "the downloaded data file (may also be given first, without --input)"})
    out: str | None = field(default=None, metadata={"help": "training JSONL to write (required)"})
    format: str = field(default="eurus-stage1", metadata={
        "help": "input format: " + "; ".join(f"{k}: {v}" for k, v in CONVERT_FORMATS.items())})
    limit: int | None = field(default=None, metadata={"help": "only the first N rows"})

    def __post_init__(self) -> None:
        if self.input is None or self.out is None:
            raise ValueError("give the input file and --out: prime-prm convert DATA --out train.jsonl")
        if self.format not in CONVERT_FORMATS:
            raise ValueError(f"unknown format '{self.format}' (choose from {', '.join(CONVERT_FORMATS)})")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


def convert(argv: list[str]) -> int:
    args, *_ = parse_config([ConvertArguments], leading_positionals(argv, "--input"), prog="prime-prm convert",
                           description=CONVERT_DESCRIPTION)
    samples = []
    for where, row in iter_data_rows(args.input):
        if args.limit is not None and len(samples) >= args.limit:
            break
        samples.append(eurus_stage1_sample(row, **where))
    if not samples:
        raise InputError("no rows to convert", path=args.input)
    atomic_write_jsonl(args.out, samples)
    correct = sum(sample["label"] for sample in samples)
    print(f"converted {len(samples)} responses ({correct} correct, {len(samples) - correct} incorrect) "
          f"-> {args.out}")
    return 0


def main() -> None:
    """``python -m primekit.prm.commands`` (the accelerate entry point) behaves like ``prime-prm train``."""
    sys.exit(run_command("prime-prm", "train", train, sys.argv[1:]))


if __name__ == "__main__":
    main()
