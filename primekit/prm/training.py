"""Training an implicit PRM from its options: the data files (given, or for the toy policy its
graded samples), the PRM and its frozen reference, :class:`~primekit.prm.trainer.ImplicitPRMTrainer`,
and the saved PRM with its reading record. ``prime-prm train`` and :func:`ensure_toy_prm
<primekit.prm.toy_prm.ensure_toy_prm>` both run it."""

from __future__ import annotations

import time

from transformers.trainer_utils import IntervalStrategy
from trl import get_peft_config

from primekit.config import resume_checkpoint
from primekit.errors import InputError
from primekit.models import load_causal_lm, load_tokenizer, resolve_model_name
from primekit.prm.config import PAIR_LOSSES, ImplicitPRMConfig, PRMModelConfig
from primekit.prm.data import load_prm_datasets
from primekit.prm.toy_prm import ToyPRMDataSpec, toy_prm_data
from primekit.prm.trainer import ImplicitPRMTrainer

__all__ = ["train_prm", "training_files"]


def training_files(config: ImplicitPRMConfig, model_args: PRMModelConfig) -> tuple[str, str | None]:
    """The data files: given ones, or for the toy policy its graded samples (drawn once, cached)."""
    if config.train_file is not None:
        return config.train_file, config.eval_file
    if model_args.model not in (None, "toy"):
        raise InputError("train_file is required unless the model is the toy policy", field="train_file")
    if config.loss_type not in ("ce", "kto"):
        raise InputError(f"the toy data are outcome-labelled samples; loss_type {config.loss_type} "
                         "needs a pairs train_file", field="loss_type")
    spec = ToyPRMDataSpec(num_train_problems=config.toy_num_train_problems,
                          num_eval_problems=config.toy_num_eval_problems,
                          samples_per_problem=config.toy_samples_per_problem, seed=config.seed)
    train_path, eval_path = toy_prm_data(resolve_model_name(model_args.model), spec)
    return str(train_path), config.eval_file or str(eval_path)


def train_prm(config: ImplicitPRMConfig, model_args: PRMModelConfig) -> dict | None:
    """Train, evaluate, save the PRM (with its reading record, ``implicit_prm.json``); the run's
    summary (main process)."""
    if model_args.load_in_4bit or model_args.load_in_8bit:
        raise InputError("quantized (4/8-bit) PRM training is not supported", field="load_in_4bit")
    resume = resume_checkpoint(config.resume_from_checkpoint, config.output_dir)
    train_file, eval_file = training_files(config, model_args)
    model_name = resolve_model_name(model_args.model)
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
        config.ref_model_name_or_path or model_args.model)
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
