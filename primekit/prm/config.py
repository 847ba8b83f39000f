"""The options of ``prime-prm train``, paired with :mod:`primekit.prm.trainer` the way TRL pairs
each ``*_config.py`` with its ``*_trainer.py``: :class:`ImplicitPRMConfig` (the implicit-PRM fields
on top of ``transformers.TrainingArguments``) and :class:`PRMModelConfig` (TRL's ``ModelConfig``
with the model given as ``--model``, as in every primekit tool)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from transformers import TrainingArguments
from trl import ModelConfig

from primekit.arguments import STEP_MODES
from primekit.config import help_text

__all__ = ["LOSS_TYPES", "OUTCOME_LOSSES", "PAIR_LOSSES", "ImplicitPRMConfig", "PRMModelConfig"]

OUTCOME_LOSSES = ("ce", "kto")  # trained on outcome-labelled samples
PAIR_LOSSES = ("dpo", "nca")  # trained on (chosen, rejected) pairs
LOSS_TYPES = OUTCOME_LOSSES + PAIR_LOSSES


@dataclass
class ImplicitPRMConfig(TrainingArguments):
    """Options of ``prime-prm train``: the implicit-PRM fields below plus every
    ``transformers.TrainingArguments`` field. Defaults train the toy PRM in a CPU minute or two;
    ``recipes/eurus_prm_stage1.yaml`` holds the published EurusPRM Stage-1 settings."""

    deprecated_aliases: ClassVar[dict[str, str]] = {"beta": "prm_beta"}

    prm_beta: float = field(default=0.05, metadata={
        "help": "scale of the implicit reward r = prm_beta * log(pi_prm / pi_ref) (PRIME / EurusPRM: 0.05)"})
    loss_type: str = field(default="ce", metadata={
        "help": "ce: cross-entropy of sigmoid(r(y)) on outcome labels (EurusPRM, PRIME); kto: unpaired "
                "KTO on outcome labels; dpo / nca: on (chosen, rejected) pairs"})
    ref_model_name_or_path: str | None = field(default=None, metadata={
        "help": "frozen reference model (hub name or path); default: the model the PRM starts from, as "
                "in EurusPRM and PRIME. Ignored with use_peft, where the LoRA base is the reference"})
    precompute_ref_log_probs: bool = field(default=False, metadata={
        "help": "score the data once with the reference before training and free the reference model "
                "(not with loss_type kto, whose KL estimate pairs samples anew in every batch)"})
    precompute_ref_batch_size: int | None = field(default=None, metadata={
        "help": "batch size of the reference pass (default: per_device_eval_batch_size)"})
    max_length: int | None = field(default=1024, metadata={
        "help": "prompt + response tokens kept; longer responses are cut, and samples whose prompt alone "
                "fills it are dropped"})
    disable_dropout: bool = field(default=True, metadata={
        "help": "switch dropout off in the PRM and the reference, so the log-ratio is not dropout noise "
                "(as TRL's DPO does)"})
    coef: float | None = field(default=None, metadata={
        "help": "inference coefficient recorded in implicit_prm.json: r = coef * log-ratio when the PRM is "
                "read (default: beta; EurusPRM's card reads with 0.001)"})
    step_mode: str = field(default="auto", metadata={
        "help": "how responses are cut into steps when this PRM is read (" + ", ".join(STEP_MODES)
                + "); recorded in implicit_prm.json"})
    append_eos: bool = field(default=True, metadata={
        "help": "end every response with the EOS token, as sampled responses do (recorded with the PRM "
                "so that scoring reads responses the same way)"})
    train_file: str | None = field(default=None, metadata={
        "help": "JSONL of {prompt, completion, label 0/1} (ce, kto) or {prompt, chosen, rejected} (dpo, "
                "nca); default: samples of the toy policy, graded (toy model only)"})
    eval_file: str | None = field(default=None, metadata={
        "help": "held-out JSONL in the same format; default: eval_fraction of train_file (toy: samples on "
                "the toy test problems)"})
    eval_fraction: float = field(default=0.05, metadata={
        "help": "share of train_file held out for evaluation when eval_file is not given (0: none)"})
    desirable_weight: float = field(default=1.0, metadata={
        "help": "kto: weight of the correct samples' loss (raise it when they are the minority)"})
    undesirable_weight: float = field(default=1.0, metadata={
        "help": "kto: weight of the incorrect samples' loss"})
    toy_num_train_problems: int = field(default=4000, metadata={
        "help": "toy data: training problems to sample the toy policy on"})
    toy_samples_per_problem: int = field(default=4, metadata={
        "help": "toy data: samples per problem at temperature 1"})
    toy_num_eval_problems: int = field(default=500, metadata={
        "help": "toy data: held-out test problems (same number of samples each)"})

    # TrainingArguments fields whose defaults suit an implicit PRM (and the toy world) better.
    output_dir: str | None = field(default="runs/prm", metadata={
        "help": "where checkpoints and the trained PRM (with implicit_prm.json) are written"})
    learning_rate: float = field(default=5e-4, metadata={
        "help": "peak learning rate (the toy's default; EurusPRM used 5e-7 on a 7B model)"})
    num_train_epochs: float = field(default=2.0, metadata={"help": "passes over the training data"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "training batch per device"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "evaluation batch per device"})
    lr_scheduler_type: str = field(default="cosine", metadata={
        "help": "learning-rate schedule (transformers SchedulerType)"})
    warmup_steps: float = field(default=10, metadata={"help": "linear warm-up steps"})
    logging_steps: float = field(default=10, metadata={"help": "log the loss every N steps"})
    eval_strategy: str = field(default="epoch", metadata={
        "help": "when to compute eval reward accuracy / AUC: no, steps or epoch"})
    save_strategy: str = field(default="epoch", metadata={"help": "when to checkpoint: no, steps or epoch"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    report_to: None | str | list[str] = field(default="none", metadata={
        "help": "experiment trackers (none, tensorboard, wandb, ...)"})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "keep dataset columns the model's forward does not name (the collator needs them)"})

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.prm_beta <= 0:
            raise ValueError(f"prm_beta must be > 0, got {self.prm_beta}")
        if self.coef is not None and self.coef <= 0:
            raise ValueError(f"coef must be > 0, got {self.coef}")
        if self.step_mode not in STEP_MODES:
            raise ValueError(f"step_mode must be one of {', '.join(STEP_MODES)}, got {self.step_mode!r}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")
        if self.loss_type == "kto":
            if self.precompute_ref_log_probs:
                raise ValueError("precompute_ref_log_probs does not work with loss_type kto: its KL "
                                 "estimate scores mismatched pairs drawn anew in every batch")
            if min(self.per_device_train_batch_size, self.per_device_eval_batch_size) < 2:
                raise ValueError("loss_type kto needs batches of at least 2 (its KL estimate pairs "
                                 "each prompt with another sample's response)")
            self.dataloader_drop_last = True  # a last batch of one has no mismatched pair
        super().__post_init__()


@dataclass
class PRMModelConfig(ModelConfig):
    """TRL's ``ModelConfig`` (dtype, LoRA, quantisation, attention) with the model named by
    ``--model``. ``model_name_or_path`` keeps TRL's meaning and is filled from ``model``, so TRL's
    helpers (``get_peft_config``, ...) read this as any ``ModelConfig``; the old spelling
    ``--model_name_or_path`` still works, with a deprecation warning."""

    deprecated_aliases: ClassVar[dict[str, str]] = {"model_name_or_path": "model"}

    model_name_or_path: str | None = field(default=None, init=False)
    model: str | None = field(default=None, metadata=help_text(
        "the model the PRM starts from (and, unless ref_model_name_or_path says otherwise, its "
        "reference): a hub name, a local folder, or 'toy' (default: the toy policy)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.model_name_or_path = self.model
