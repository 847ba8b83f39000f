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

The PRM's loading, update and scoring live in :mod:`primekit.rl.prm_update`, what a checkpoint holds
beyond TRL's in :mod:`primekit.rl.checkpoint`, and the step metrics and the console's progress line
in :mod:`primekit.rl.progress`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from datasets import Dataset
from transformers import Trainer, TrainerCallback
from transformers.utils import logging
from trl import GRPOTrainer

from primekit.errors import InputError
from primekit.rl.advantages import implicit_token_rewards, normalize_token_rewards, prime_advantages
from primekit.rl.batch import PROMPT_KEYS, concat_rows, rank_of_rows, row_assignment, trim_columns, truncated_rows
from primekit.rl.checkpoint import PrmCheckpointMixin
from primekit.rl.config import PrimeConfig, fsdp_mixed_precision
from primekit.rl.data import OfficialEpoch, prompt_length
from primekit.rl.filtering import GroupSelection, filter_groups
from primekit.rl.prm_update import ImplicitPrmMixin, check_master_precision
from primekit.rl.progress import append_step_metrics, install_progress_line, prm_accuracy, process_reward_stats
from primekit.rl.verifier import OutcomeVerifier
from primekit.rl.vllm_sync import reload_colocated_weights

__all__ = ["PrimeTrainer", "decay_parameter_names"]

logger = logging.get_logger(__name__)


def decay_parameter_names(model: torch.nn.Module, which: str) -> list[str]:
    """The policy parameters AdamW decays: every one for ``which='all'`` (the official AdamW over all
    parameters, fsdp_workers.py:206-209), else the HF Trainer's choice (no biases, no norm weights)."""
    if which == "all":
        return [name for name, _ in model.named_parameters()]
    return Trainer.get_decay_parameter_names(None, model)


class PrimeTrainer(PrmCheckpointMixin, ImplicitPrmMixin, GRPOTrainer):
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
            reload_colocated_weights(self.vllm_generation)
        if len(self.reward_funcs) != 1:
            raise ValueError("PRIME's outcome reward is a single 0/1 verifier; pass one reward function")
        install_progress_line(self)
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

    def get_train_dataloader(self):
        """TRL's loader, with batches ``oversample_factor`` times the trained size: the extra prompts
        are what the filter chooses from. (PrimeConfig scales ``generation_batch_size`` the same way.)"""
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
            prm_metrics.update(prm_accuracy(self._gather_in_order(predicted, assignment), acc, weights,
                                             self.num_generations))
            trained_mask = _zero_rows(kept["completion_mask"], weights)
            tokens = implicit_token_rewards(q, trained_mask, self.args.prm_beta, self.args.reward_granularity)
            scope = rank_of_rows(assignment).to(q.device) if self.args.prime_norm_scope == "rank" else None
            process_rewards = normalize_token_rewards(tokens, trained_mask, self.args.prime_norm, row_groups=scope)
            prm_metrics.update(process_reward_stats(process_rewards, trained_mask))
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
        append_step_metrics(self._metrics["train"], selection, acc, weights, prm_metrics, timings, rounds)
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


def _zero_rows(mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mask`` with the rows of zero weight (groups kept only to fill the batch) set to 0."""
    return mask * (weights > 0).unsqueeze(1).to(mask.dtype)
