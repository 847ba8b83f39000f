"""``prime-prm train`` and ``prime-prm score``.

``prime-prm train`` with no arguments trains an implicit PRM in the toy world: the toy policy is
both the PRM's starting point and its reference, and the data are the policy's own samples on toy
problems, graded. ``--config recipes/eurus_prm_stage1.yaml`` gives the published EurusPRM Stage-1
run instead. ``prime-prm score`` writes token, step and sequence rewards for a JSONL of responses,
resuming where a killed run stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from primekit.config import parse_config
from primekit.errors import InputError

TRAIN_DESCRIPTION = ("Train an implicit PRM (a causal LM read against a frozen reference) on outcome "
                     "labels or preference pairs. Without options: the toy PRM.")
SCORE_DESCRIPTION = ("Token, step and sequence rewards of an implicit PRM for a JSONL of "
                     "{prompt, response} records (resumable).")


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
    """Train, evaluate, save the PRM with its reading record; the run's summary (main process)."""
    from transformers.trainer_utils import IntervalStrategy
    from trl import get_peft_config

    from primekit.models import load_causal_lm, load_tokenizer, resolve_model_name
    from primekit.prm.data import load_prm_datasets
    from primekit.prm.implicit import write_prm_record
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
    write_prm_record(config.output_dir, reference=reference, beta=config.beta, append_eos=config.append_eos)
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


@dataclass
class ScoreArguments:
    """Options of ``prime-prm score``."""

    prm: str = field(metadata={"help": "the PRM: hub name, model directory, or LoRA adapter directory"})
    input: str = field(metadata={"help": "JSONL of records with 'prompt' (text or chat messages) and "
                                         "'response'; other fields are copied to the output"})
    out: str = field(metadata={"help": "output JSONL: each input record plus token_rewards, step_rewards "
                                       "and sequence_reward; a killed run resumes"})
    ref: str | None = field(default=None, metadata={
        "help": "reference model; default: the one recorded with the PRM, or a LoRA PRM's base"})
    beta: float | None = field(default=None, metadata={
        "help": "reward scale; default: the PRM's recorded beta, else 0.05"})
    separator: str = field(default="\\n", metadata={
        "help": "text that ends a reasoning step (escapes \\n and \\t are understood)"})
    batch_size: int = field(default=16, metadata={"help": "responses per forward pass"})
    dtype: str = field(default="auto", metadata={"help": "model dtype: auto, float32, bfloat16, float16"})
    device: str | None = field(default=None, metadata={"help": "device; default: cuda if available, else cpu"})

    def __post_init__(self) -> None:
        self.separator = self.separator.replace("\\n", "\n").replace("\\t", "\t")
        if not self.separator:
            raise ValueError("separator must not be empty")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def _read_score_input(path: str) -> list[tuple[str, dict]]:
    """``(resume key, record)`` per input line; the key changes when the line's text does, so a
    stale partial result for an edited input is recomputed rather than reused."""
    from primekit.io import iter_jsonl, require_field
    from primekit.prm.data import check_prompt

    items = []
    for line, record in iter_jsonl(path):
        check_prompt(require_field(record, "prompt", path=path, line=line), path=path, line=line)
        require_field(record, "response", path=path, line=line, kind=str)
        digest = hashlib.sha1(json.dumps([record["prompt"], record["response"]]).encode()).hexdigest()[:16]
        items.append((f"{line}:{digest}", record))
    return items


def score(argv: list[str]) -> int:
    from tqdm.auto import tqdm

    from primekit.io import ResumableJsonl, atomic_write_jsonl
    from primekit.prm.implicit import ImplicitPRM

    args, *_ = parse_config([ScoreArguments], argv, prog="prime-prm score", description=SCORE_DESCRIPTION)
    items = _read_score_input(args.input)
    out = Path(args.out)
    partial = ResumableJsonl(out.with_name(f".{out.name}.partial"), key=lambda record: record["key"])
    todo = [(key, record) for key, record in items if key not in partial.done]
    if todo:
        prm = ImplicitPRM.from_pretrained(args.prm, args.ref, beta=args.beta, dtype=args.dtype,
                                          device=args.device, batch_size=args.batch_size)
        chunk_size = 8 * args.batch_size  # results reach the disk every few batches
        with tqdm(total=len(items), initial=len(items) - len(todo), desc="score", unit="response") as bar:
            for start in range(0, len(todo), chunk_size):
                chunk = todo[start:start + chunk_size]
                results = prm.rewards([r["prompt"] for _, r in chunk], [r["response"] for _, r in chunk],
                                      separator=args.separator)
                for (key, _), result in zip(chunk, results):
                    partial.append({"key": key,
                                    "token_rewards": [round(x, 6) for x in result.token_rewards.tolist()],
                                    "step_rewards": [round(x, 6) for x in result.step_rewards],
                                    "sequence_reward": round(result.sequence_reward, 6)})
                bar.update(len(chunk))
    rows = []
    for key, record in items:
        rewards = {name: value for name, value in partial.records[key].items() if name != "key"}
        rows.append({**record, **rewards})
    atomic_write_jsonl(out, rows)
    partial.path.unlink(missing_ok=True)
    print(f"scored {len(rows)} responses -> {out}")
    return 0
