"""The implicit PRM inside :class:`~primekit.rl.trainer.PrimeTrainer`: loading and placing it and its
reference, its online update, and the process rewards q_t = log pi_prm - log pi_prm_ref it scores.

The PRM follows the policy's parallelism: under DDP (``accelerate``'s MULTI_GPU / MULTI_CPU) it is a
second DDP model; under FSDP2 it is sharded with accelerate's own FSDP2 preparation (per decoder
layer, the plugin's mixed-precision and CPU-offload policies) and so is its frozen reference. Its
update is the cross-entropy of sigmoid(beta * sum_t q_t) against the outcome, data-parallel over
the processes, with a plain torch AdamW of its own.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from accelerate.utils import DistributedType
from accelerate.utils.fsdp_utils import fsdp2_prepare_model
from torch.distributed.tensor import DTensor
from trl.models import prepare_deepspeed, prepare_fsdp
from trl.trainer.utils import add_fused_lm_head, create_model_from_path, disable_dropout_in_model, get_config_model_id

from primekit.errors import InputError
from primekit.prm.losses import ce_loss, sequence_rewards
from primekit.rl.batch import trim_columns

__all__ = ["ImplicitPrmMixin", "check_master_precision"]

_DDP_TYPES = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
#: The accelerate config a refusal points to when a setting needs FSDP2.
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


class ImplicitPrmMixin:
    """PrimeTrainer's PRM methods (a mixin of a ``GRPOTrainer`` subclass: it uses the trainer's
    accelerator, arguments, KL reference and TRL's ``_get_per_token_logps_and_entropies``)."""

    def _model_init_kwargs(self) -> dict[str, Any]:
        """The policy's loading options (dtype, attention kernel, ...), as TRL uses for its reference."""
        kwargs = dict(self.args.model_init_kwargs or {})
        if self.args.distributed_state.distributed_type in (DistributedType.MULTI_GPU, DistributedType.DEEPSPEED):
            kwargs["device_map"] = None
        kwargs.setdefault("trust_remote_code", self.args.trust_remote_code)
        kwargs.setdefault("dtype", self.model.dtype)
        kwargs.setdefault("attn_implementation", self.model.config._attn_implementation)
        return kwargs

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

    def _prm_mini_batch_size(self) -> int:
        return self.args.prm_mini_batch_size or self.args.trained_batch_size

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
