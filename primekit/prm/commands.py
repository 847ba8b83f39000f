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
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from primekit.config import parse_config
from primekit.errors import InputError
from primekit.prm.reading import RECORD_FILE

logger = logging.getLogger(__name__)

TRAIN_DESCRIPTION = ("Train an implicit PRM (a causal LM read against a frozen reference) on outcome "
                     "labels or preference pairs. Without options: the toy PRM.")
SCORE_DESCRIPTION = ("Token, step and sequence rewards of an implicit PRM for a JSONL of "
                     "{prompt or problem, response} records (resumable).")
TOY_PRM = "runs/prm"  # where `prime-prm train` without options saves the toy PRM


def train(argv: list[str]) -> int:
    from trl import ModelConfig

    from primekit.prm.trainer import ImplicitPRMConfig

    config, model_args, *_ = parse_config([ImplicitPRMConfig, ModelConfig], argv, prog="prime-prm train",
                                      description=TRAIN_DESCRIPTION)
    summary = train_prm(config, model_args)
    if summary is not None:
        _print_summary(summary)
    return 0


def _resume_argument(value: str | None) -> str | bool | None:
    """``--resume_from_checkpoint true`` (or ``last``) resumes from the newest checkpoint in
    ``output_dir``; a path resumes from that checkpoint."""
    if value is None:
        return None
    if value.lower() in {"true", "last"}:
        return True
    if not Path(value).is_dir():
        raise InputError("checkpoint directory not found", path=value, field="resume_from_checkpoint")
    return value


def _training_files(config, model_args) -> tuple[str, str | None]:
    """The data files: given ones, or for the toy policy its graded samples (drawn once, cached)."""
    if config.train_file is not None:
        return config.train_file, config.eval_file
    if model_args.model_name_or_path not in (None, "toy"):
        raise InputError("train_file is required unless the model is the toy policy", field="train_file")
    if config.loss_type not in ("ce", "kto"):
        raise InputError(f"the toy data are outcome-labelled samples; loss_type {config.loss_type} "
                         "needs a pairs train_file", field="loss_type")
    from primekit.models import resolve_model_name
    from primekit.prm.toy_data import ToyPRMDataSpec, toy_prm_data

    spec = ToyPRMDataSpec(num_train_problems=config.toy_num_train_problems,
                          num_eval_problems=config.toy_num_eval_problems,
                          samples_per_problem=config.toy_samples_per_problem, seed=config.seed)
    train_path, eval_path = toy_prm_data(resolve_model_name(model_args.model_name_or_path), spec)
    return str(train_path), config.eval_file or str(eval_path)


def train_prm(config, model_args) -> dict | None:
    """Train, evaluate, save the PRM (with its reading record, ``implicit_prm.json``); the run's
    summary (main process)."""
    from transformers.trainer_utils import IntervalStrategy
    from trl import get_peft_config

    from primekit.models import load_causal_lm, load_tokenizer, resolve_model_name
    from primekit.prm.data import load_prm_datasets
    from primekit.prm.trainer import PAIR_LOSSES, ImplicitPRMTrainer

    if model_args.load_in_4bit or model_args.load_in_8bit:
        raise InputError("quantized (4/8-bit) PRM training is not supported", field="load_in_4bit")
    resume = _resume_argument(config.resume_from_checkpoint)
    train_file, eval_file = _training_files(config, model_args)
    model_name = resolve_model_name(model_args.model_name_or_path)
    tokenizer = load_tokenizer(model_name)
    train_data, eval_data = load_prm_datasets(
        tokenizer, pairs=config.loss_type in PAIR_LOSSES, train_file=train_file, eval_file=eval_file,
        eval_fraction=config.eval_fraction, max_length=config.max_length,
        append_eos=config.append_eos, seed=config.seed)
    if eval_data is None:
        config.eval_strategy = IntervalStrategy.NO

    peft_config = get_peft_config(model_args)
    model = load_causal_lm(model_name, dtype=model_args.dtype, trainable=True)
    reference = None if peft_config is not None else resolve_model_name(
        config.ref_model_name_or_path or model_args.model_name_or_path)
    ref_model = None if reference is None else load_causal_lm(reference, dtype=model_args.dtype)
    trainer = ImplicitPRMTrainer(model, config, ref_model=ref_model, train_dataset=train_data,
                                 eval_dataset=eval_data, processing_class=tokenizer,
                                 peft_config=peft_config)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    metrics = trainer.evaluate() if eval_data is not None else {}
    trainer.save_model(config.output_dir)
    if not trainer.is_world_process_zero():
        return None
    return {"model": model_name, "reference": reference or f"{model_name} (LoRA base)",
            "loss": config.loss_type, "train samples": len(train_data),
            "eval samples": 0 if eval_data is None else len(eval_data),
            "eval reward accuracy": metrics.get("eval_reward_accuracy"),
            "eval AUC": metrics.get("eval_auc"), "eval pair accuracy": metrics.get("eval_pair_accuracy"),
            "train time": f"{seconds:.1f} s", "output dir": str(config.output_dir)}


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="implicit PRM", show_header=False)
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")  # long paths wrap instead of being cut
    for name, value in summary.items():
        if value is not None:
            table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    Console().print(table)


def toy_prm_path() -> Path:
    """The toy implicit PRM: the one ``prime-prm train`` (no options) saved, trained first if
    there is none yet."""
    path = Path(TOY_PRM)
    if not (path / RECORD_FILE).is_file():
        logger.warning("no toy PRM in %s yet: training it once (prime-prm train)", path)
        train([])
    return path


@dataclass
class ScoreArguments:
    """Options of ``prime-prm score`` besides the PRM reading options."""

    input: str = field(metadata={"help": "JSONL of records with 'response' and 'prompt' (text read "
                                         "verbatim, or chat messages) and/or 'problem' (read per "
                                         "--prm_context); other fields are copied to the output"})
    out: str = field(metadata={"help": "output JSONL: each input record plus the steps read, token_rewards, "
                                       "step_rewards, q_values, sequence_reward and the --aggregate "
                                       "scores; a killed run resumes"})
    batch_size: int = field(default=16, metadata={"help": "responses per forward pass"})
    dtype: str = field(default="auto", metadata={"help": "model dtype: auto, float32, bfloat16, float16"})
    device: str | None = field(default=None, metadata={"help": "device; default: cuda if available, else cpu"})

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def _score_prompt(record: dict, prm_context: str, *, path: str, line: int):
    """What the PRM reads before this record's response: the problem through ``prm_context``
    when the record has one, else its prompt as given."""
    from primekit.prm.data import check_prompt
    from primekit.prm.reading import Query, prm_prompt

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
    from primekit.io import iter_jsonl, require_field

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
    from tqdm.auto import tqdm

    from primekit.io import ResumableJsonl, atomic_write_jsonl
    from primekit.prm.implicit import ImplicitPRM
    from primekit.prm.reading import PRMReadingArguments, aggregate

    args, reading, *_ = parse_config([ScoreArguments, PRMReadingArguments], argv, prog="prime-prm score",
                                 description=SCORE_DESCRIPTION)
    items = _read_score_input(args.input, reading.prm_context)
    settings = reading.resolve()
    out = Path(args.out)
    partial = ResumableJsonl(partial_path(out, settings), key=lambda record: record["key"])
    todo = [(key, prompt, record) for key, record, prompt in items if key not in partial.done]
    if todo:
        prm = ImplicitPRM.from_settings(settings, dtype=args.dtype, device=args.device,
                                        batch_size=args.batch_size)
        chunk_size = 8 * args.batch_size  # results reach the disk every few batches
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
    from primekit.config import leading_positionals
    from primekit.io import atomic_write_jsonl
    from primekit.prm.data import eurus_stage1_sample, iter_data_rows

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
    import sys

    from primekit.cli import dispatch

    sys.exit(dispatch("prime-prm", ["train", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
