"""``PrimeConfig``: TRL's ``GRPOConfig`` plus every knob of the PRIME online loop.

Defaults are the settings of the Eurus-2-7B-PRIME run (PRIME repository:
``training/examples/run_prime_main.sh`` on ``training/verl/trainer/config/ppo_trainer.yaml``), except
how a batch of passing prompts is gathered (here ``oversample_factor`` 4 without refill over TRL's
sampler; the run samples 1x and samples again in its own epoch order, ``max_refill_rounds`` and
``epoch_mode``), which parameters decay (``weight_decay_parameters``: the HF Trainer's groups) and
the prompt cap (``max_prompt_length``, none by default). The batch sizes of that run are in ``recipes/eurus_2_7b_prime.yaml``, whose
header table cites the source line of every setting.

Batch sizes keep TRL's meaning for the *trained* batch: ``per_device_train_batch_size`` completions
per device and micro-step, ``gradient_accumulation_steps`` micro-steps per optimizer step. PRIME
samples ``oversample_factor`` times more prompts than it trains on and keeps the ones the
accuracy / truncation filter prefers, so ``generation_batch_size`` is derived here (trained batch x
oversample_factor) and must not be set by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.distributed.fsdp import MixedPrecisionPolicy
from transformers.trainer_utils import SaveStrategy
from trl import GRPOConfig

from primekit.rl.verifier import CODE_REWARDS

__all__ = ["PrimeConfig", "PRM_UPDATE_MODES", "REWARD_GRANULARITIES", "PRIME_NORMS", "PRIME_NORM_SCOPES",
           "PER_TOKEN_LOSS_TYPES", "EPOCH_MODES", "WEIGHT_DECAY_PARAMETERS", "REDUCE_DTYPES", "fsdp_mixed_precision"]

PRM_UPDATE_MODES = ("before", "after", "none")
REWARD_GRANULARITIES = ("token", "whole")
PRIME_NORMS = ("batch_norm", "none")
PRIME_NORM_SCOPES = ("rank", "global")
#: TRL loss types whose per-token surrogate accepts PRIME's (B, T) advantages unchanged.
PER_TOKEN_LOSS_TYPES = ("dapo", "bnpo", "grpo", "dr_grpo")
#: 'official': the loader's batches in order, surplus passing prompts buffered, the epoch ends with the
#: loader; 'sampler': TRL's sampler gives each RL step one batch and refills are random draws.
EPOCH_MODES = ("official", "sampler")
#: Which policy parameters AdamW decays: every one (the official run) or all but biases and norms (HF Trainer).
WEIGHT_DECAY_PARAMETERS = ("all", "no_bias_norm")
#: FSDP2 gradient reduce dtype: fp32 (the official run's FSDP mixed precision), or the compute dtype
#: (accelerate's default for ``mixed_precision: bf16``).
REDUCE_DTYPES = ("float32", "param_dtype")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got '{value}'")


@dataclass
class PrimeConfig(GRPOConfig):
    """Configuration of :class:`primekit.rl.trainer.PrimeTrainer` (see the module docstring)."""

    #: the PRM options' earlier names (the other CLIs call the same models ``prm``, ``prm_ref``)
    deprecated_aliases: ClassVar[dict[str, str]] = {"prm_model_name_or_path": "prm",
                                                    "prm_ref_model_name_or_path": "prm_ref"}

    # --- overridden GRPOConfig defaults -------------------------------------------------------
    learning_rate: float = field(
        default=5e-7,
        metadata={"help": "Policy learning rate (AdamW). PRIME's official value is 5e-7 for a 7B policy; "
                          "a tiny toy policy needs about 1e-4."})
    num_generations: int | None = field(
        default=4,
        metadata={"help": "Responses sampled per prompt (n). The leave-one-out baseline needs n >= 2; "
                          "PRIME uses 4."})
    temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the rollouts (PRIME: 1.0)."})
    scale_rewards: str = field(
        default="none",
        metadata={"help": "TRL's own group-std scaling of its outcome advantages. PRIME replaces those "
                          "advantages with its whitened per-token ones, so this only affects TRL's "
                          "logged reward statistics; keep 'none'."})
    loss_type: str = field(
        default="grpo",
        metadata={"help": "How the clipped per-token surrogate is averaged. 'grpo' (default) takes each "
                          "response's token-mean and averages over responses: the official run's loss, a "
                          "token-mean per micro-batch of one response per GPU, "
                          "whatever the micro-batch here. 'dapo' divides the sum over "
                          "every response token of the batch by their number (recomputed after filtering). "
                          f"Allowed: {', '.join(PER_TOKEN_LOSS_TYPES)}."})
    weight_decay: float = field(
        default=0.01,
        metadata={"help": "Policy AdamW weight decay (official: 0.01, verl's default)."})
    vllm_importance_sampling_correction: bool = field(
        default=False,
        metadata={"help": "TRL's truncated importance sampling between the trained policy and vLLM's sampling "
                          "log-probs (TRL's default: on, mode sequence_mask, cap 3.0: each response's loss is "
                          "scaled by exp(sum of log-prob differences) and responses above the cap are zeroed). "
                          "Off here: the official run has no such term; its PPO ratio is to old log-probs that "
                          "the actor recomputes after generation."})

    # --- how the gradients and the optimizer behave (the official run's, not the HF Trainer's) -----
    weight_decay_parameters: str = field(
        default="no_bias_norm",
        metadata={"help": "Which policy parameters AdamW decays. 'all': every parameter, as the official "
                          "AdamW over actor_module_fsdp.parameters() (Qwen2's q/k/v "
                          "biases and RMSNorm weights included); 'no_bias_norm': the HF Trainer's groups "
                          "(biases and norm weights undecayed). Allowed: " + ", ".join(WEIGHT_DECAY_PARAMETERS)})
    sync_gradients_each_micro_batch: bool = field(
        default=True,
        metadata={"help": "Reduce (DDP) / reduce-scatter (FSDP2) the gradients after every micro-batch, for the "
                          "policy and the PRM, as the official FSDP1 update does (a plain backward per micro-batch). "
                          "Under FSDP2 this keeps the accumulated gradient "
                          "sharded: with false (the HF Trainer's default) every process holds the unsharded "
                          "gradient of the whole model until the last micro-batch."})
    fsdp_reduce_dtype: str = field(
        default="float32",
        metadata={"help": "dtype of FSDP2's gradient reduce-scatter under mixed precision, for the policy, the PRM "
                          "and the references. 'float32': the official FSDP mixed precision (param bf16, reduce "
                          "fp32); 'param_dtype': accelerate's default for "
                          "mixed_precision bf16 (gradients reduced and accumulated in bf16). Allowed: "
                          + ", ".join(REDUCE_DTYPES)})
    save_every_rl_steps: int | None = field(
        default=None,
        metadata={"help": "Checkpoint every N RL steps (one generation batch and its policy updates), as the "
                          "official trainer.save_freq counts. Sets save_strategy 'steps' and "
                          "save_steps = N x the optimizer steps of one RL step (save_steps alone counts optimizer "
                          "steps). None: save_steps as given."})
    epoch_mode: str = field(
        default="sampler",
        metadata={"help": "What one epoch is. 'official': each sampling round takes the next batch of one "
                          "shuffled pass over the prompts (DataLoader(shuffle=True, drop_last=True)), "
                          "surplus passing prompts are buffered and sampled again at the next step, and the epoch "
                          "ends when the pass runs out (an unfinished last batch is not trained on). "
                          "'sampler': TRL's sampler gives each RL step one batch and refill rounds draw prompts at "
                          "random from the whole set. Allowed: " + ", ".join(EPOCH_MODES)})

    # --- the implicit PRM ----------------------------------------------------------------------
    prm: str | None = field(
        default=None,
        metadata={"help": "Initial weights of the implicit PRM (a causal LM). Default: the policy's own "
                          "weights (the SFT model), as in PRIME."})
    prm_ref: str | None = field(
        default=None,
        metadata={"help": "Frozen reference of the implicit PRM: q_t = log pi_prm - log pi_ref. Default: the "
                          "policy's initial weights (the SFT model). When it equals the policy and TRL's KL "
                          "reference is loaded (beta > 0) at temperature 1, that model is shared."})
    prm_beta: float = field(
        default=0.05,
        metadata={"help": "beta of the implicit reward r = beta * log(pi_prm / pi_ref) (PRIME: 0.05)."})
    prm_learning_rate: float = field(
        default=1e-6, metadata={"help": "PRM learning rate (AdamW, constant schedule; PRIME: 1e-6)."})
    prm_weight_decay: float = field(
        default=0.0, metadata={"help": "PRM AdamW weight decay (PRIME: 0)."})
    prm_grad_clip: float = field(
        default=10.0, metadata={"help": "Max global gradient norm of a PRM update (PRIME: 10)."})
    prm_update: str = field(
        default="after",
        metadata={"help": "When the PRM learns from the batch's outcome labels. 'after' (the Eurus-2-7B-PRIME "
                          "run): each PRM mini-batch is rewarded with the log-ratios of its own training "
                          "forward, taken before that mini-batch's optimizer step, so no second scoring pass "
                          "is needed. 'before' (verl's later recipe): update on the whole batch, then score it "
                          "again with the updated PRM. 'none': frozen PRM baseline."})
    prm_mini_batch_size: int | None = field(
        default=None,
        metadata={"help": "Completions per PRM optimizer step, over all processes. Default: the whole "
                          "trained batch in one step. The Eurus-2-7B-PRIME run uses 256 of 1024, i.e. four "
                          "PRM optimizer steps per training step."})
    prm_micro_batch_size: int | None = field(
        default=None,
        metadata={"help": "Completions per PRM forward/backward on one device (gradient accumulation inside "
                          "a mini-batch). Default: per_device_train_batch_size."})

    # --- rewards and advantages ----------------------------------------------------------------
    reward_granularity: str = field(
        default="token",
        metadata={"help": "'token' (official): every response token t gets its own "
                          "reward from q_t; 'whole': the sum over the response on its last token only. (The "
                          "official token reward is q_t itself; primekit scales it by prm_beta, which batch_norm "
                          "divides out again.)"})
    prime_norm: str = field(
        default="batch_norm",
        metadata={"help": "'batch_norm' divides the token rewards by the largest |return-to-go| they give in "
                          "its scope (official default; makes the result independent of beta); 'none' "
                          "keeps beta*q."})
    prime_norm_scope: str = field(
        default="rank",
        metadata={"help": "Rows whose largest |return-to-go| sets the batch_norm scale. 'rank' (official): "
                          "the rows each process trains on, as the official PRM worker normalises inside "
                          "each data-parallel rank; 'global': the whole trained batch, "
                          "which makes the result independent of the number of processes."})
    process_reward_coef: float = field(
        default=5.0,
        metadata={"help": "Weight of the RLOO-centred process (implicit PRM) rewards (the official "
                          "reward_model.rm_coef=5). Officially the coefficients weight only the "
                          "logged total reward, not the advantages; with equal process and "
                          "outcome coefficients the whitening of the returns makes the two the same. 0 gives the "
                          "plain RLOO outcome-only baseline: no PRM is loaded or trained."})
    outcome_reward_coef: float = field(
        default=5.0, metadata={"help": "Weight of the RLOO-centred verifier reward (the official "
                                       "verifier.reward_coef: 5; see process_reward_coef)."})

    code_reward: str = field(
        default="prime",
        metadata={"help": "Outcome score of a code row (with the default verifier). 'prime' (official): 1 "
                          "when every test passes, else the fraction of the first 10 tests that pass; 'pass_all': 1 "
                          "only when every test passes (stops at the first failing test, so it is cheaper)."})

    # --- filtering and oversampling ------------------------------------------------------------
    oversample_factor: float = field(
        default=4.0,
        metadata={"help": "Prompts sampled per trained prompt, e.g. 4: 256 sampled for 64 trained. The filter "
                          "keeps the trained number of groups, preferring those that pass. The Eurus-2-7B-PRIME "
                          "run samples 1x and samples again until enough pass (see "
                          "max_refill_rounds)."})
    filter_accuracy: bool = field(
        default=True,
        metadata={"help": "Prefer prompts whose group accuracy lies in [accuracy_lower, accuracy_upper]."})
    accuracy_lower: float = field(
        default=0.2, metadata={"help": "Lower edge (inclusive) of the accuracy band (PRIME: 0.2)."})
    accuracy_upper: float = field(
        default=0.8, metadata={"help": "Upper edge (inclusive) of the accuracy band (PRIME: 0.8)."})
    filter_truncated: bool = field(
        default=False,
        metadata={"help": "Treat a group holding a truncated response (no EOS within max_completion_length) "
                          "as failing the filter (official: off)."})
    max_refill_rounds: int = field(
        default=0,
        metadata={"help": "When fewer groups pass the filter than are trained on, sample and verify up to this "
                          "many further generation batches (fresh prompts drawn at random from the training "
                          "set, or under epoch_mode 'official' the loader's next batches) until the trained batch "
                          "is full of passing groups, like the official run's sampling loop, "
                          "which has no such cap. A cap reached fills the batch with failing groups (see "
                          "train_on_failing) and logs a warning. 0: no refill."})
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "Drop training prompts longer than this many tokens (after the chat template) "
                          "before training, with a logged count, as the official run's dataset does "
                          "(data.max_prompt_length=1024). None keeps every prompt."})
    train_on_failing: bool = field(
        default=True,
        metadata={"help": "When fewer groups pass than are trained on, the batch is filled with failing "
                          "groups. True trains on them like the rest (verl's later filter_and_downsample recipe; "
                          "the Eurus-2-7B-PRIME run never trains on failing groups: it samples again until enough "
                          "pass); False gives them zero weight (their completion mask is "
                          "zeroed, so neither the PRM nor the policy learns from them)."})

    def __post_init__(self) -> None:
        self._check_prime_fields()
        if self.generation_batch_size is not None:
            raise ValueError("generation_batch_size is derived from the trained batch and oversample_factor; "
                             "set per_device_train_batch_size / gradient_accumulation_steps instead")
        super().__post_init__()
        self._derive_generation_batch()
        self._apply_schedule()

    def _apply_schedule(self) -> None:
        """Gradient sync per micro-batch (through the HF Trainer's accelerate plugin) and checkpoints in RL steps."""
        kwargs = dict(self.accelerator_config.gradient_accumulation_kwargs or {})
        kwargs["sync_each_batch"] = self.sync_gradients_each_micro_batch
        self.accelerator_config.gradient_accumulation_kwargs = kwargs
        if self.save_every_rl_steps is not None:
            self.save_strategy = SaveStrategy.STEPS
            self.save_steps = self.save_every_rl_steps * self.optimizer_steps_per_rl_step

    def _check_prime_fields(self) -> None:
        if self.num_generations is None or self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (the leave-one-out baseline needs two responses "
                             f"per prompt); got {self.num_generations}")
        for name in ("accuracy_lower", "accuracy_upper"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]; got {value}")
        if self.accuracy_lower > self.accuracy_upper:
            raise ValueError(f"accuracy_lower ({self.accuracy_lower}) is above accuracy_upper ({self.accuracy_upper})")
        _choice("prm_update", self.prm_update, PRM_UPDATE_MODES)
        _choice("reward_granularity", self.reward_granularity, REWARD_GRANULARITIES)
        _choice("prime_norm", self.prime_norm, PRIME_NORMS)
        _choice("prime_norm_scope", self.prime_norm_scope, PRIME_NORM_SCOPES)
        _choice("loss_type", self.loss_type, PER_TOKEN_LOSS_TYPES)
        _choice("code_reward", self.code_reward, CODE_REWARDS)
        if self.process_reward_coef < 0 or self.outcome_reward_coef < 0:
            raise ValueError("process_reward_coef and outcome_reward_coef must be >= 0")
        if self.process_reward_coef == 0 and self.outcome_reward_coef == 0:
            raise ValueError("process_reward_coef and outcome_reward_coef are both 0: nothing to learn from")
        if self.oversample_factor < 1:
            raise ValueError(f"oversample_factor must be >= 1; got {self.oversample_factor}")
        if self.prm_beta <= 0:
            raise ValueError(f"prm_beta must be > 0; got {self.prm_beta}")
        if self.prm_learning_rate < 0 or self.prm_grad_clip <= 0:
            raise ValueError("prm_learning_rate must be >= 0 and prm_grad_clip > 0")
        if self.max_refill_rounds < 0:
            raise ValueError(f"max_refill_rounds must be >= 0; got {self.max_refill_rounds}")
        _choice("epoch_mode", self.epoch_mode, EPOCH_MODES)
        _choice("weight_decay_parameters", self.weight_decay_parameters, WEIGHT_DECAY_PARAMETERS)
        _choice("fsdp_reduce_dtype", self.fsdp_reduce_dtype, REDUCE_DTYPES)
        for name in ("prm_mini_batch_size", "prm_micro_batch_size", "max_prompt_length", "save_every_rl_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")

    def _derive_generation_batch(self) -> None:
        """Scale TRL's generation batch (= the trained batch here) by ``oversample_factor``."""
        trained = self.generation_batch_size  # TRL checked that it holds whole groups
        per_device = self.per_device_train_batch_size * self.oversample_factor
        groups = trained // self.num_generations * self.oversample_factor
        if per_device != int(per_device) or groups != int(groups):
            raise ValueError(f"oversample_factor {self.oversample_factor} must turn the per-device batch "
                             f"({self.per_device_train_batch_size}) and the trained prompts "
                             f"({trained // self.num_generations}) into whole numbers")
        self.generation_batch_size = int(trained * self.oversample_factor)
        if self.prm_mini_batch_size is not None and (trained % self.prm_mini_batch_size
                                                     or self.prm_mini_batch_size % self.world_size):
            raise ValueError(f"prm_mini_batch_size ({self.prm_mini_batch_size}) must divide the trained batch "
                             f"({trained}) and be a multiple of the number of processes ({self.world_size})")

    @property
    def trained_batch_size(self) -> int:
        """Completions trained on per generation, over all processes."""
        return round(self.generation_batch_size / self.oversample_factor)

    @property
    def optimizer_steps_per_rl_step(self) -> int:
        """Policy optimizer steps per RL step: TRL generates once every ``steps_per_generation`` micro-steps
        and reuses the batch ``num_iterations`` times."""
        micro_steps = self.steps_per_generation * self.num_iterations
        if micro_steps % self.gradient_accumulation_steps:
            raise ValueError(f"steps_per_generation x num_iterations ({micro_steps}) must be a multiple of "
                             f"gradient_accumulation_steps ({self.gradient_accumulation_steps})")
        return micro_steps // self.gradient_accumulation_steps

    @property
    def uses_prm(self) -> bool:
        """False for the outcome-only RLOO baseline, which needs no PRM at all."""
        return self.process_reward_coef != 0


def fsdp_mixed_precision(mixed_precision: str, reduce_dtype: str) -> object | None:
    """FSDP2's ``MixedPrecisionPolicy`` for accelerate's ``mixed_precision`` ('no', 'bf16', 'fp16') with
    ``reduce_dtype`` ('float32' or 'param_dtype'); None without mixed precision.

    accelerate builds ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16)`` from
    ``mixed_precision: bf16`` (``FullyShardedDataParallelPlugin.set_mixed_precision``); the official run
    reduces in fp32 (fsdp_workers.py:157-167), which is what 'float32' gives.
    """
    compute = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision)
    if compute is None:
        return None
    return MixedPrecisionPolicy(param_dtype=compute,
                                reduce_dtype=torch.float32 if reduce_dtype == "float32" else compute)
