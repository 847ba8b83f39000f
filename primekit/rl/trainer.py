"""``PrimeTrainer``: PRIME online RL as an extension of TRL's ``GRPOTrainer``.

TRL keeps everything it already does well: sampling (transformers or vLLM), the verifier call,
the KL reference, the clipped per-token surrogate, the optimizer, logging and checkpoints. PRIME
changes what happens between sampling and the policy loss, so the one method it overrides is
``_generate_and_score_completions``; after TRL has generated and verified the batch it

1. gathers the batch of every process (TRL's ``gather`` of the rewards already holds the 0/1
   outcome of each response; token ids and masks are padded and gathered here);
2. filters whole groups on the global batch (accuracy band, truncation) and keeps the trained
   number of them (oversampling: the generation batch is ``oversample_factor`` times larger);
   the kept rows are then split evenly over the processes (:func:`primekit.rl.batch.row_assignment`),
   so every process trains on the same number of rows and the policy never spends compute on a
   dropped group;
3. trains the implicit PRM with the cross-entropy of sigmoid(beta * sum_t q_t) against the
   outcome, before or after scoring (``prm_update``), data-parallel over the processes;
4. scores the kept responses: q_t = log pi_prm - log pi_prm_ref from TRL's own
   ``_get_per_token_logps_and_entropies`` (the PRM models get TRL's fused log-prob head at
   temperature 1: the PRM is a density ratio, not a sampler);
5. turns q and the outcome into per-token advantages (:func:`primekit.rl.advantages.prime_advantages`)
   and returns them as TRL's ``advantages`` (B, T), which its ``_compute_loss`` accepts as is.

Padding. A step's rows span every length the batch has, so each forward is cut to its own rows'
longest prompt and completion: every PRM / reference micro-batch (``prm_micro_batch_size``) and
every policy micro-batch TRL hands to its loss (``_prepare_inputs``). At one response per
micro-batch, as in the 7B recipe, no forward computes padding (the official run removes it with
``use_remove_padding``).

Groups that the filter keeps only to fill the batch (fewer groups passed than are trained on)
are trained on by default (verl's later ``filter_and_downsample``; the Eurus-2-7B-PRIME run samples
again until enough pass, see ``max_refill_rounds`` and ``epoch_mode``); with ``train_on_failing=False`` their
completion mask is zeroed instead, which drops them from the PRM loss, the policy loss and the
token count that normalises it (``num_items_in_batch``), while the batch keeps TRL's fixed shape.

Parallelism and precision. The PRM follows the policy's backend: under DDP (``accelerate``'s
MULTI_GPU / MULTI_CPU) it is a second DDP model; under FSDP2 (``distributed_type: FSDP``,
``fsdp_version: 2``) it is sharded with accelerate's own FSDP2 preparation (per decoder layer, the
plugin's mixed-precision and CPU-offload policies) and so is its frozen reference, so that at 7B
each GPU holds 1/N of every model. Trained parameters are kept in fp32 and computed in bf16: FSDP2
with ``mixed_precision: bf16`` upcasts them to fp32 master weights itself, and under DDP the
models are loaded in fp32 and run under bf16 autocast. A run that would let AdamW step bf16/fp16
weights directly (where an update of lr 5e-7 rounds to nothing) is refused at start-up, as are
DeepSpeed and FSDP1 for a trained PRM (each would need a second engine); the frozen-PRM and
outcome-only baselines run under any backend TRL supports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from accelerate.utils import DistributedType
from accelerate.utils.fsdp_utils import fsdp2_prepare_model
from datasets import Dataset
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.tensor import DTensor
from transformers import TrainerCallback
from transformers.utils import logging
from trl import GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp
from trl.trainer.utils import add_fused_lm_head, create_model_from_path, disable_dropout_in_model, get_config_model_id

from primekit.errors import InputError
from primekit.prm.losses import ce_loss, pairwise_accuracy, reward_accuracy, sequence_rewards
from primekit.prm.reading import write_prm_record
from primekit.rl.advantages import implicit_token_rewards, normalize_token_rewards, prime_advantages
from primekit.rl.batch import (PROMPT_KEYS, concat_rows, rank_of_rows, row_assignment, trim_columns,
                               truncated_rows)
from primekit.rl.config import PrimeConfig, fsdp_mixed_precision
from primekit.rl.data import OfficialEpoch, prompt_length
from primekit.rl.filtering import GroupSelection, filter_groups
from primekit.rl.verifier import OutcomeVerifier

__all__ = ["PrimeTrainer", "PRM_DIR", "PRM_OPTIMIZER_DIR", "check_master_precision", "decay_parameter_names"]

logger = logging.get_logger(__name__)

#: Sub-folder of a checkpoint (and of the final output) holding the PRM as a loadable model.
PRM_DIR = "prm"
#: The PRM's optimizer state inside a checkpoint folder (a torch.distributed.checkpoint folder,
#: sharded like the optimizer itself, so FSDP2 ranks write and read only their own shards).
PRM_OPTIMIZER_DIR = "prm_optimizer"
#: Where a checkpoint keeps the official epoch's position (loader cursor, buffered prompts).
EPOCH_STATE_FILE = "prime_epoch.json"
_DDP_TYPES = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
_FSDP2_CONFIG = "recipes/accelerate/fsdp2_8gpu.yaml"
_LOW_PRECISION = (torch.bfloat16, torch.float16)
#: The batch fields a log-prob forward reads.
_FORWARD_KEYS = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")


def check_master_precision(model: torch.nn.Module, what: str, distributed_type: DistributedType,
                           mixed_precision: str) -> None:
    """Refuse trained parameters that AdamW would step in bf16/fp16.

    bf16 keeps 8 bits of mantissa: at |w| = 0.02 its spacing is 1.2e-4, so an Adam update of about
    lr = 5e-7 rounds to nothing and the run silently learns nothing. FSDP2 with a mixed-precision
    policy upcasts the trained parameters to fp32 master weights itself, and DeepSpeed's bf16 mode
    keeps fp32 master weights in its optimizer; DDP and single-process runs step the parameters as
    they were loaded.
    """
    upcast_by_backend = (distributed_type == DistributedType.DEEPSPEED
                         or (distributed_type == DistributedType.FSDP and mixed_precision != "no"))
    if upcast_by_backend:
        return
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad and p.dtype in _LOW_PRECISION}
    if dtypes:
        dtype = str(next(iter(dtypes))).removeprefix("torch.")
        raise InputError(f"the {what}'s trained parameters are {dtype} and AdamW would step them directly, so an "
                         "update of lr ~5e-7 rounds to nothing; load them in float32 (model_init_kwargs: "
                         "{\"dtype\": \"float32\"}) and set bf16: true for bf16 compute, or train under FSDP2 "
                         f"with mixed precision ({_FSDP2_CONFIG})")


def decay_parameter_names(model: torch.nn.Module, which: str) -> list[str]:
    """The policy parameters AdamW decays: every one for ``which='all'`` (the official AdamW over all
    parameters, fsdp_workers.py:206-209), else the HF Trainer's choice (no biases, no norm weights)."""
    if which == "all":
        return [name for name, _ in model.named_parameters()]
    from transformers import Trainer

    return Trainer.get_decay_parameter_names(None, model)


class PrimeTrainer(GRPOTrainer):
    """GRPOTrainer whose advantages come from PRIME (implicit process rewards + outcome RLOO).

    ``model`` is the policy (a path or a loaded model saved with ``save_pretrained``; the PRM and
    its reference default to the same weights), ``reward_funcs`` the single outcome verifier
    (default: :class:`primekit.rl.verifier.OutcomeVerifier`, which grades the dataset's ``answer``
    column with the math grader or, for code rows, runs its tests in the sandbox, scoring code as
    ``args.code_reward`` says). Other arguments are GRPOTrainer's.
    """

    _tag_names = ["trl", "grpo", "prime"]
    _name = "PRIME"

    def __init__(self, model: Any, args: PrimeConfig, reward_funcs: Callable | None = None, **kwargs: Any):
        if not isinstance(args, PrimeConfig):
            raise TypeError(f"PrimeTrainer needs a PrimeConfig, got {type(args).__name__}")
        super().__init__(model=model, reward_funcs=reward_funcs or OutcomeVerifier(code_reward=args.code_reward),
                         args=args, **kwargs)
        if self.use_vllm:  # vLLM's supported weight reload where TRL's own sync would fail
            from primekit.rl.vllm_sync import reload_colocated_weights

            reload_colocated_weights(self.vllm_generation)
        if len(self.reward_funcs) != 1:
            raise ValueError("PRIME's outcome reward is a single 0/1 verifier; pass one reward function")
        self.prm: torch.nn.Module | None = None
        self.prm_ref: torch.nn.Module | None = None
        self.prm_optimizer: torch.optim.Optimizer | None = None
        self._prm_ref_is_kl_ref = False
        self._outcome_rewards: torch.Tensor | None = None
        check_master_precision(self.model, "policy", self.accelerator.distributed_type,
                               self.accelerator.mixed_precision)
        self._drop_long_prompts()
        needs_index = args.max_refill_rounds or args.epoch_mode == "official"
        if needs_index and not isinstance(self.train_dataset, Dataset):
            raise InputError("max_refill_rounds and epoch_mode official read prompts by index, which a streaming "
                             "(iterable) dataset does not allow; load the dataset without streaming")
        self._epoch: OfficialEpoch | None = None
        self._epoch_restored = False
        self._round_prompts: list[int] = []  # dataset index of each group sampled this step (official epoch)
        self._epoch_end = None  # None, "after_rl_step" (the loader is spent) or "now" (this batch is not trained)
        if args.epoch_mode == "official":
            self._epoch = OfficialEpoch(len(self.train_dataset), args.generation_batch_size // self.num_generations,
                                        multiple=self.accelerator.num_processes, seed=args.seed,
                                        shuffle=args.shuffle_dataset)
            self.add_callback(_OfficialEpochCallback(self))
        if args.uses_prm:
            self._load_prm()

    # ------------------------------------------------------------------------------------------
    # set-up

    def create_accelerator_and_postprocess(self) -> None:
        """The HF Trainer's accelerator, with FSDP2's mixed-precision policy set from ``fsdp_reduce_dtype``
        before any model is sharded (accelerate would reduce in the compute dtype)."""
        super().create_accelerator_and_postprocess()
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if plugin is not None and getattr(plugin, "fsdp_version", 1) == 2:
            policy = fsdp_mixed_precision(self.accelerator.mixed_precision, self.args.fsdp_reduce_dtype)
            if policy is not None:
                plugin.mixed_precision_policy = policy

    def get_decay_parameter_names(self, model: torch.nn.Module) -> list[str]:
        return decay_parameter_names(model, self.args.weight_decay_parameters)

    def _model_init_kwargs(self) -> dict[str, Any]:
        """The policy's loading options (dtype, attention kernel, ...), as TRL uses for its reference."""
        kwargs = dict(self.args.model_init_kwargs or {})
        if self.args.distributed_state.distributed_type in (DistributedType.MULTI_GPU, DistributedType.DEEPSPEED):
            kwargs["device_map"] = None
        kwargs.setdefault("trust_remote_code", self.args.trust_remote_code)
        kwargs.setdefault("dtype", self.model.dtype)
        kwargs.setdefault("attn_implementation", self.model.config._attn_implementation)
        return kwargs

    def _drop_long_prompts(self) -> None:
        """Apply ``max_prompt_length`` to the training prompts, as rendered for the policy."""
        limit = self.args.max_prompt_length
        if limit is None or self.train_dataset is None:
            return
        tokenizer = self._tokenizer

        def fits(row: dict[str, Any]) -> bool:
            return prompt_length(row["prompt"], tokenizer) <= limit

        before = len(self.train_dataset)
        self.train_dataset = self.train_dataset.filter(fits, desc=f"Dropping prompts over {limit} tokens")
        kept = len(self.train_dataset)
        if kept == 0:
            raise InputError(f"every training prompt is longer than max_prompt_length={limit} tokens")
        if self.accelerator.is_main_process:
            logger.warning(f"max_prompt_length={limit}: dropped {before - kept} of {before} training prompts")

    def _load_prm(self) -> None:
        args = self.args
        trains_prm = args.prm_update != "none"
        kind = self.accelerator.distributed_type
        if trains_prm and kind == DistributedType.DEEPSPEED:
            raise InputError("a trained PRM needs its own engine, which DeepSpeed does not give it; shard it with "
                             f"FSDP2 instead: accelerate launch --config_file {_FSDP2_CONFIG} (or prm_update: none)")
        if trains_prm and kind == DistributedType.FSDP and not self.accelerator.is_fsdp2:
            raise InputError(f"a trained PRM is sharded with FSDP2 only; set fsdp_version: 2 ({_FSDP2_CONFIG})")
        if trains_prm and kind not in (*_DDP_TYPES, DistributedType.FSDP):
            raise InputError(f"training the PRM under {kind.value} is not supported; use DDP or FSDP2 "
                             f"({_FSDP2_CONFIG}), or prm_update: none")
        if trains_prm and args.fp16:
            raise InputError("fp16 needs a loss scaler that the PRM update does not have; use bf16")
        policy_id = get_config_model_id(self.accelerator.unwrap_model(self.model).config)
        if not policy_id and not (args.prm and args.prm_ref):
            raise InputError("the policy was not loaded from a path, so the PRM cannot default to it; set "
                             "prm and prm_ref")
        init_kwargs = self._model_init_kwargs()

        prm = create_model_from_path(args.prm or policy_id, **init_kwargs)
        add_fused_lm_head(prm, temperature=1.0, cast_lm_head_to_fp32=args.cast_lm_head_to_fp32)
        if args.disable_dropout:
            disable_dropout_in_model(prm)
        if trains_prm:
            check_master_precision(prm, "PRM", kind, self.accelerator.mixed_precision)
            if args.gradient_checkpointing:
                prm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs
                                                  or {"use_reentrant": False})
                prm.config.use_cache = False
            prm.train()
            self.prm = self._shard(prm) if self.is_fsdp_enabled else self.accelerator.prepare_model(prm)
            # A plain torch optimizer, created after sharding so it holds the (sharded) master weights:
            # accelerate's wrapper would skip steps taken while the policy is between
            # gradient-accumulation boundaries, which is exactly when the PRM learns.
            self.prm_optimizer = torch.optim.AdamW(self.prm.parameters(), lr=args.prm_learning_rate,
                                                   weight_decay=args.prm_weight_decay)
        else:
            prm.requires_grad_(False)
            self.prm = self._prepare_frozen(prm)

        ref_id = args.prm_ref or policy_id
        self._prm_ref_is_kl_ref = (self.ref_model is not None and ref_id == policy_id
                                   and args.temperature == 1.0)
        if self._prm_ref_is_kl_ref:
            self.prm_ref = self.ref_model  # TRL's KL reference: same weights, head at temperature 1
        else:
            prm_ref = create_model_from_path(ref_id, **init_kwargs)
            add_fused_lm_head(prm_ref, temperature=1.0, cast_lm_head_to_fp32=args.cast_lm_head_to_fp32)
            prm_ref.requires_grad_(False)
            self.prm_ref = self._prepare_frozen(prm_ref)

    def _shard(self, model: torch.nn.Module) -> torch.nn.Module:
        """FSDP2 for a model the accelerator did not prepare itself: accelerate's own preparation
        (per-layer ``fully_shard`` by the plugin's wrap policy, its mixed-precision and offload
        policies, fp32 upcast of trained parameters, rank-0 loading when cpu_ram_efficient_loading)."""
        return fsdp2_prepare_model(self.accelerator, model)

    def _prepare_frozen(self, model: torch.nn.Module) -> torch.nn.Module:
        """An evaluation-only model placed like TRL places its KL reference."""
        model.eval()
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(model, self.accelerator)
        if self.is_fsdp_enabled and self.accelerator.is_fsdp2:
            return self._shard(model)  # sharded exactly like the trained PRM, so q is 0 at initialisation
        if self.is_fsdp_enabled:
            return prepare_fsdp(model, self.accelerator)
        return self.accelerator.prepare_model(model, evaluation_mode=True)

    def get_train_dataloader(self):
        """TRL's loader, with batches ``oversample_factor`` times the trained size: the extra prompts
        are what the filter chooses from. (``generation_batch_size`` was scaled in PrimeConfig.)"""
        trained = self._train_batch_size
        self._train_batch_size = round(trained * self.args.oversample_factor)
        try:
            return super().get_train_dataloader()
        finally:
            self._train_batch_size = trained

    # ------------------------------------------------------------------------------------------
    # the PRIME step

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's verifier call; keeps the gathered (B_global, 1) outcome for the PRIME step."""
        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._outcome_rewards = rewards[:, 0]
        return rewards

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        start = time.perf_counter()
        if self._epoch is not None and self.model.training:  # the official epoch's order, not TRL's sampler
            self._round_prompts = self._epoch.next_round(first=True)
            if self._round_prompts is None:
                raise RuntimeError("the official epoch's loader is spent; the epoch should have ended")
            inputs = self._rows_of(self._round_prompts)
        output = super()._generate_and_score_completions(inputs)
        if not self.model.training:  # evaluation keeps TRL's outcome-only advantages
            return output
        outcome = torch.nan_to_num(self._outcome_rewards, nan=0.0)
        batch = self._gather_rows(output)
        selection = self._select_groups(batch, outcome)
        rounds, spent = 1, False
        while selection.stats.num_passing < selection.stats.num_kept and rounds <= self.args.max_refill_rounds:
            if self._epoch is not None:
                prompts = self._epoch.next_round(first=False)
                if prompts is None:
                    spent = True
                    break
                self._round_prompts.extend(prompts)
                refill = self._rows_of(prompts)
            else:
                refill = self._refill_inputs(rounds)
            extra = super()._generate_and_score_completions(refill)
            outcome = torch.cat([outcome, torch.nan_to_num(self._outcome_rewards, nan=0.0)])
            batch = concat_rows([batch, self._gather_rows(extra)], self._pad_values())
            selection = self._select_groups(batch, outcome)
            rounds += 1
        timings = {"generate_and_verify": time.perf_counter() - start}
        kept = {key: value[selection.row_indices] for key, value in batch.items()}
        acc = outcome[selection.row_indices]
        weights = selection.row_weights.to(acc.dtype)
        short = selection.stats.num_passing < selection.stats.num_kept
        if self._epoch is not None:
            spent = spent or (short and self._epoch.batches_left == 0)
            weights = self._follow_official_epoch(selection, weights, short and spent)
        if short and not spent and self.args.max_refill_rounds and self.accelerator.is_main_process:
            logger.warning(f"max_refill_rounds={self.args.max_refill_rounds} reached with "
                           f"{selection.stats.num_passing} of {selection.stats.num_kept} groups passing; the batch is "
                           f"filled with failing groups (train_on_failing={self.args.train_on_failing})")

        assignment = row_assignment(len(acc), self._prm_mini_batch_size(), self.accelerator.num_processes)
        mine = assignment[self.accelerator.process_index].to(acc.device)
        local = trim_columns({key: value[mine] for key, value in kept.items()})

        process_rewards = torch.zeros_like(kept["completion_mask"], dtype=torch.float32)
        if self.prm is not None:
            q_local, predicted, prm_metrics = self._prm_step(local, acc[mine], weights[mine], timings)
            q = self._gather_in_order(q_local, assignment, kept["completion_mask"].shape[1])
            prm_metrics.update(_prm_accuracy(self._gather_in_order(predicted, assignment), acc, weights,
                                             self.num_generations))
            trained_mask = _zero_rows(kept["completion_mask"], weights)
            tokens = implicit_token_rewards(q, trained_mask, self.args.prm_beta, self.args.reward_granularity)
            scope = rank_of_rows(assignment).to(q.device) if self.args.prime_norm_scope == "rank" else None
            process_rewards = normalize_token_rewards(tokens, trained_mask, self.args.prime_norm, row_groups=scope)
            prm_metrics.update(_process_reward_stats(process_rewards, trained_mask))
        else:
            prm_metrics = {}

        start = time.perf_counter()
        advantages, _ = prime_advantages(
            process_rewards, acc, kept["completion_mask"], self.num_generations,
            process_coef=self.args.process_reward_coef, outcome_coef=self.args.outcome_reward_coef,
            valid_rows=weights > 0)
        timings["advantages"] = time.perf_counter() - start

        local["completion_mask"] = _zero_rows(local["completion_mask"], weights[mine])
        local["advantages"] = advantages[mine][:, : local["completion_mask"].shape[1]]
        loss_mask = _zero_rows(kept["completion_mask"], weights)
        if "tool_mask" in kept:
            loss_mask = loss_mask * kept["tool_mask"]
        local["num_items_in_batch"] = loss_mask.sum()
        self._log_prime_metrics(selection, acc, weights, prm_metrics, timings, rounds)
        return local

    def _prepare_inputs(self, generation_batch: dict[str, Any]) -> dict[str, Any]:
        """TRL's micro-batch for the policy loss, cut to its own longest prompt and completion. TRL
        slices it from the buffered batch, which is padded to the longest row of the whole step,
        so at one response per micro-batch (the 7B recipe) most of the policy's forward and
        backward would otherwise be spent on padding."""
        inputs = super()._prepare_inputs(generation_batch)
        return trim_columns(inputs) if self.model.training else inputs

    def _select_groups(self, batch: dict[str, torch.Tensor], outcome: torch.Tensor) -> GroupSelection:
        """The accuracy / truncation filter over every group sampled so far this step."""
        truncated = truncated_rows(batch["completion_ids"], batch["completion_mask"], self.eos_token_ids)
        return filter_groups(
            outcome, self.num_generations, self.args.trained_batch_size // self.num_generations,
            truncated=truncated if self.args.filter_truncated else None,
            low=self.args.accuracy_lower, high=self.args.accuracy_upper,
            filter_accuracy=self.args.filter_accuracy, train_on_failing=self.args.train_on_failing)

    def _follow_official_epoch(self, selection: GroupSelection, weights: torch.Tensor, spent_short: bool) -> torch.Tensor:
        """Buffer the surplus passing prompts for the next step; when the loader ran out before enough
        passed, nothing of this batch is trained (weights 0, the policy step dropped) and the epoch
        ends, as the official loop leaves it; when the loader is spent, the epoch ends after this RL step."""
        surplus = selection.surplus_passing.tolist()
        self._epoch.keep_for_next_step([self._round_prompts[g] for g in surplus])
        if spent_short:
            self._epoch_end = "now"
            if self.accelerator.is_main_process:
                logger.warning(f"epoch {self._epoch.epoch} ends: the loader ran out with {selection.stats.num_passing} "
                               f"of {selection.stats.num_kept} groups passing; that last batch is not trained on")
            return torch.zeros_like(weights)
        if self._epoch.batches_left == 0:
            self._epoch_end = "after_rl_step"
        return weights

    def _rows_of(self, prompts: list[int]) -> list[dict[str, Any]]:
        """This process's share of a generation round over ``prompts`` (dataset indices), n copies each,
        laid out as TRL's sampler lays out a generation batch."""
        rows = [self.train_dataset[int(i)] for i in prompts for _ in range(self.num_generations)]
        share = len(rows) // self.accelerator.num_processes
        start = self.accelerator.process_index * share
        return rows[start:start + share]

    def _refill_inputs(self, round_index: int) -> list[dict[str, Any]]:
        """This process's share of one more generation batch of fresh prompts (n copies each).

        The prompts are a seeded random draw from the training set, the same on every process
        (the seed is the run's seed, the step and the round), laid out as TRL's sampler lays out a
        generation batch, so TRL's generation, verification and gather run on it unchanged.
        """
        prompts = self.args.generation_batch_size // self.num_generations
        generator = torch.Generator().manual_seed(hash((self.args.seed, self.state.global_step, round_index)) % 2**63)
        count = len(self.train_dataset)
        indices = torch.randperm(count, generator=generator)[:prompts] if count >= prompts else \
            torch.randint(count, (prompts,), generator=generator)
        return self._rows_of(indices.tolist())

    def _pad_values(self) -> dict[str, int]:
        return {"prompt_ids": self._tokenizer.pad_token_id, "completion_ids": self._tokenizer.pad_token_id}

    def _prm_mini_batch_size(self) -> int:
        return self.args.prm_mini_batch_size or self.args.trained_batch_size

    def _gather_rows(self, output: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Every per-response tensor of TRL's output, padded and gathered over the processes."""
        rows = output["prompt_ids"].shape[0]
        gathered = {}
        for key, value in output.items():
            if key in ("advantages", "num_items_in_batch"):
                continue
            if not (isinstance(value, torch.Tensor) and value.dim() >= 1 and value.shape[0] == rows):
                raise ValueError(f"PRIME regroups text batches only; cannot regroup the field '{key}'")
            pad = self._pad_values().get(key, 0)
            if value.dim() >= 2:
                value = self.accelerator.pad_across_processes(value, dim=1, pad_index=pad,
                                                              pad_first=key in PROMPT_KEYS)
            gathered[key] = self.accelerator.gather(value)
        return gathered

    def _gather_in_order(self, local: torch.Tensor, assignment: torch.Tensor, width: int | None = None) -> torch.Tensor:
        """Gather each process's rows (right-padded to ``width`` columns) back into kept-batch order."""
        if width is not None:
            local = torch.nn.functional.pad(local, (0, width - local.shape[1]))
        gathered = self.accelerator.gather(local)
        result = torch.empty_like(gathered)
        result[assignment.reshape(-1).to(gathered.device)] = gathered
        return result

    # ------------------------------------------------------------------------------------------
    # the implicit PRM

    def _completion_logps(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                          rows: slice = slice(None)) -> torch.Tensor:
        """log pi_model(y_t | x, y_<t) on the completion tokens of ``batch[rows]``, 0 on padding.

        One forward per PRM micro-batch (:meth:`_prm_micro_batches`), each cut to its own longest
        prompt and completion: the rows of a process span the whole batch's lengths, and at the
        official micro-batch of one response a forward at the batch's width would mostly compute
        padding. The reference, the update and the scoring pass all cut the same micro-batches,
        so q is exactly 0 where the PRM still equals its reference.
        """
        num_rows, width = batch["completion_ids"].shape
        start, stop, _ = rows.indices(num_rows)
        parts = [slice(max(chunk.start, start), min(chunk.stop, stop))
                 for mini in self._prm_micro_batches(num_rows) for chunk in mini
                 if chunk.start < stop and chunk.stop > start]
        pieces = []
        for part in parts:
            inputs = trim_columns({key: batch[key][part] for key in _FORWARD_KEYS})
            logps, _, _ = self._get_per_token_logps_and_entropies(
                model, torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1),
                torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1), inputs["completion_ids"].shape[1])
            logps = logps.float() * inputs["completion_mask"]
            pieces.append(torch.nn.functional.pad(logps, (0, width - logps.shape[1])))
        return torch.cat(pieces)

    def _prm_micro_batch_size(self) -> int:
        return self.args.prm_micro_batch_size or self.args.per_device_train_batch_size

    def _prm_micro_batches(self, num_rows: int) -> list[list[slice]]:
        """This process's ``num_rows`` rows as PRM mini-batches (its share of ``prm_mini_batch_size``),
        each a list of micro-batch row slices of at most ``prm_micro_batch_size`` rows."""
        mini = self._prm_mini_batch_size() // self.accelerator.num_processes
        micro = self._prm_micro_batch_size()
        batches = []
        for begin in range(0, num_rows, mini):
            end = min(begin + mini, num_rows)
            batches.append([slice(s, min(s + micro, end)) for s in range(begin, end, micro)])
        return batches

    def _prm_step(self, local: dict[str, torch.Tensor], acc: torch.Tensor, weights: torch.Tensor,
                  timings: dict[str, float]) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """Update (per ``prm_update``) and score this process's rows.

        Returns q (rows, T), the sequence rewards the PRM gave each row *before* learning from it
        (a genuine prediction, for the accuracy metrics) and the update's loss metrics. The
        reference log-probs are computed here, on the same regrouped, padded rows as the PRM's,
        so that q is exactly 0 where the PRM still equals its reference (padding changes bf16
        results, so reusing log-probs computed on TRL's original batch would not give 0).
        """
        start = time.perf_counter()
        with torch.no_grad():
            ref_logps = self._completion_logps(self.prm_ref, local)
        timings["prm_reference"] = time.perf_counter() - start
        mode = self.args.prm_update
        metrics: dict[str, float] = {}
        if mode == "none":
            start = time.perf_counter()
            q = self._score(local, ref_logps)
            timings["prm_score"] = time.perf_counter() - start
            return q, sequence_rewards(q, local["completion_mask"], self.args.prm_beta), metrics
        start = time.perf_counter()
        q, predicted, metrics = self._update_prm(local, ref_logps, acc, weights)
        timings["prm_update"] = time.perf_counter() - start
        if mode == "before":
            start = time.perf_counter()
            q = self._score(local, ref_logps)
            timings["prm_score"] = time.perf_counter() - start
        return q, predicted, metrics

    @torch.no_grad()
    def _score(self, local: dict[str, torch.Tensor], ref_logps: torch.Tensor) -> torch.Tensor:
        return self._completion_logps(self.prm, local) - ref_logps

    def _update_prm(self, local: dict[str, torch.Tensor], ref_logps: torch.Tensor, acc: torch.Tensor,
                    weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """One pass over the rows in mini-batches: CE(sigmoid(beta * sum_t q_t), outcome), AdamW.

        Each mini-batch's loss is the mean over its trained rows on *all* processes: a process
        scales its sum by P / (global count), and the DDP / FSDP2 gradient average divides by P
        again. Returns q of every row from its training forward, i.e. before its own mini-batch's
        optimizer step (what ``prm_update: after`` rewards the policy with), the sequence reward
        that forward gave each row, and the loss / gradient-norm metrics.
        """
        processes = self.accelerator.num_processes
        q_seen = torch.zeros_like(ref_logps)
        seen = torch.full_like(acc, float("nan"))
        losses, norms = [], []
        for chunks in self._prm_micro_batches(len(acc)):
            total = self.accelerator.gather((weights[chunks[0].start:chunks[-1].stop] > 0).sum().reshape(1)).sum()
            loss_value = torch.zeros((), device=acc.device)
            for index, rows in enumerate(chunks):
                last = index == len(chunks) - 1
                sync = last or self.args.sync_gradients_each_micro_batch  # sharded gradients under FSDP2
                with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.prm):
                    q = self._completion_logps(self.prm, local, rows) - ref_logps[rows]
                    q_seen[rows] = q.detach()
                    rewards = sequence_rewards(q, local["completion_mask"][rows], self.args.prm_beta)
                    seen[rows] = rewards.detach()
                    chosen = weights[rows] > 0
                    if total > 0 and chosen.any():
                        loss = ce_loss(rewards[chosen], acc[rows][chosen]) * chosen.sum() * processes / total
                    else:  # a backward all the same keeps the DDP / FSDP2 collectives in step across processes
                        loss = rewards.sum() * 0.0
                    loss.backward()
                loss_value += loss.detach() / processes
            if total == 0:  # every process sees the same total: all skip the step together
                self.prm_optimizer.zero_grad(set_to_none=True)
                continue
            norm = torch.nn.utils.clip_grad_norm_(self.prm.parameters(), self.args.prm_grad_clip)
            norms.append(float(norm.full_tensor() if isinstance(norm, DTensor) else norm))
            self.prm_optimizer.step()
            self.prm_optimizer.zero_grad(set_to_none=True)
            losses.append(float(self.accelerator.reduce(loss_value, reduction="sum")))
        if not losses:
            return q_seen, seen, {}
        return q_seen, seen, {"prm/loss": sum(losses) / len(losses), "prm/grad_norm": sum(norms) / len(norms)}

    # ------------------------------------------------------------------------------------------
    # logging

    def _log_prime_metrics(self, selection: GroupSelection, acc: torch.Tensor, weights: torch.Tensor,
                           prm_metrics: dict[str, float], timings: dict[str, float], rounds: int) -> None:
        metrics = self._metrics["train"]
        metrics["prime/generation_rounds"].append(float(rounds))
        for key, value in selection.stats.as_metrics(prefix="prime/filter/").items():
            metrics[key].append(value)
        trained = weights > 0
        metrics["prime/trained_accuracy"].append(float(acc[trained].mean()) if trained.any() else float("nan"))
        metrics["prime/trained_fraction"].append(float(trained.float().mean()))
        for key, value in prm_metrics.items():
            metrics[key].append(value)
        for phase, seconds in timings.items():
            metrics[f"time/{phase}"].append(seconds)

    # ------------------------------------------------------------------------------------------
    # checkpoints: the PRM weights and optimizer travel with TRL's checkpoint

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """TRL's save, plus the PRM as a loadable model in ``<output_dir>/prm``. Every process
        takes part: under FSDP2 the full weights are gathered from the shards first."""
        super().save_model(output_dir, _internal_call)
        if self.prm is not None:
            self._save_prm(Path(output_dir or self.args.output_dir) / PRM_DIR)

    def _full_prm_state(self) -> dict[str, torch.Tensor]:
        """The PRM's full weights on the main process (gathered to CPU under FSDP2); {} elsewhere."""
        if self.accelerator.is_fsdp2:
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_model_state_dict(self.prm, options=options)
        model = self.accelerator.unwrap_model(self.prm)
        return model.state_dict() if self.accelerator.is_main_process else {}

    def _save_prm(self, target: Path) -> None:
        """Write to a temporary folder and rename it into place, so a kill never leaves half a PRM."""
        state = self._full_prm_state()
        if not self.args.should_save:
            return
        staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        model = self.accelerator.unwrap_model(self.prm)
        model.save_pretrained(staging, state_dict=state)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(staging)
        policy_id = get_config_model_id(self.accelerator.unwrap_model(self.model).config)
        write_prm_record(staging, base=self.args.prm or policy_id,
                         reference=self.args.prm_ref or policy_id, beta=self.args.prm_beta)
        previous = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, previous)
        os.replace(staging, target)
        shutil.rmtree(previous, ignore_errors=True)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self._epoch is not None and self.args.should_save:
            from primekit.io import atomic_write_json

            atomic_write_json(Path(output_dir) / EPOCH_STATE_FILE, self._epoch.state_dict())
        if self.prm_optimizer is not None:  # a collective: every process writes its own shard
            state = get_optimizer_state_dict(self.prm, self.prm_optimizer)
            dcp.save({"optimizer": state}, checkpoint_id=Path(output_dir) / PRM_OPTIMIZER_DIR)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """TRL's resume hook; restores the PRM weights and optimizer written with the checkpoint."""
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None and self._epoch is not None and (Path(checkpoint) / EPOCH_STATE_FILE).is_file():
            import json

            self._epoch.load_state_dict(json.loads((Path(checkpoint) / EPOCH_STATE_FILE).read_text()))
            self._epoch_restored = True
        if checkpoint is None or self.prm is None:
            return
        folder = Path(checkpoint) / PRM_DIR
        if not any(folder.glob("*.safetensors")):
            raise InputError(f"{checkpoint} holds no PRM ({PRM_DIR}/*.safetensors); resume it with the "
                             "settings it was written with")
        full = _read_safetensors(folder) if self.accelerator.is_main_process or not self.accelerator.is_fsdp2 else {}
        if self.accelerator.is_fsdp2:
            set_model_state_dict(self.prm, full, options=StateDictOptions(full_state_dict=True,
                                                                          broadcast_from_rank0=True, strict=False))
        else:
            model = self.accelerator.unwrap_model(self.prm)
            missing = set(model.load_state_dict(full, strict=False).missing_keys)
            if missing - _tied_parameter_names(model):
                raise InputError(f"{folder} misses PRM weights: {sorted(missing)[:3]}")
        if self.prm_optimizer is not None:
            state = {"optimizer": get_optimizer_state_dict(self.prm, self.prm_optimizer)}
            dcp.load(state, checkpoint_id=Path(checkpoint) / PRM_OPTIMIZER_DIR)
            set_optimizer_state_dict(self.prm, self.prm_optimizer, state["optimizer"])


class _OfficialEpochCallback(TrainerCallback):
    """Runs PrimeTrainer's official epoch inside the HF Trainer's loop: a new pass at each epoch,
    the epoch stopped once the loader is spent, and the policy step of an untrained last batch
    dropped (its gradients set to None, so AdamW leaves those parameters and their state alone)."""

    def __init__(self, trainer: PrimeTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer._epoch_restored:  # resumed inside the checkpoint's epoch, at its position
            trainer._epoch_restored = False
            return
        trainer._epoch.start_epoch(trainer._epoch.epoch + 1)
        trainer._epoch_end = None
        generate_every = args.steps_per_generation * args.num_iterations
        if trainer._step % generate_every:  # the last epoch stopped inside an RL step: sample afresh
            trainer._step += generate_every - trainer._step % generate_every
            trainer._buffered_inputs = None

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self.trainer._epoch_end == "now" and optimizer is not None:
            for group in optimizer.param_groups:
                for parameter in group["params"]:
                    parameter.grad = None

    def on_step_end(self, args, state, control, **kwargs):
        trainer = self.trainer
        rl_step_done = trainer._step % (args.steps_per_generation * args.num_iterations) == 0
        if trainer._epoch_end == "now" or (trainer._epoch_end == "after_rl_step" and rl_step_done):
            control.should_epoch_stop = True
            trainer._epoch_end = None


def _read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model folder (one file or several shards)."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    return state


def _tied_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names under which a parameter that is shared with another name is reachable (tied weights,
    which ``save_pretrained`` writes once)."""
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return {name for group in names.values() if len(group) > 1 for name in group}


def _zero_rows(mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mask`` with the rows of zero weight (groups kept only to fill the batch) set to 0."""
    return mask * (weights > 0).unsqueeze(1).to(mask.dtype)


def _prm_accuracy(predicted: torch.Tensor, acc: torch.Tensor, weights: torch.Tensor,
                  group_size: int) -> dict[str, float]:
    """How well the PRM's sequence rewards predicted the outcomes of the trained rows, before it
    learned from them: sign accuracy, and ranking accuracy within each prompt's group."""
    trained = weights > 0
    if not trained.any():
        return {}
    return {"prm/accuracy": float(reward_accuracy(predicted[trained], acc[trained])),
            "prm/pairwise_accuracy": float(pairwise_accuracy(predicted[trained], acc[trained], group_size)),
            "prm/sequence_reward_mean": float(predicted[trained].mean())}


def _process_reward_stats(rewards: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    values = rewards[mask.bool()]
    if values.numel() < 2:
        return {}
    return {"prime/process_reward_mean": float(values.mean()), "prime/process_reward_std": float(values.std())}
