"""Offline training of an implicit PRM on a transformers ``Trainer``.

``ImplicitPRMTrainer`` keeps everything ``Trainer`` does (optimisation, accelerate / DeepSpeed,
gradient accumulation, checkpoints and ``resume_from_checkpoint``, logging) and overrides only what
is specific to an implicit PRM: the loss (:mod:`primekit.prm.losses` on the sequence reward
r(y) = beta * sum_t [log pi_phi(y_t|...) - log pi_ref(y_t|...)]), the evaluation read-out (reward
accuracy and ROC AUC of r(y) on held-out labelled samples) and the frozen reference model.

The reference is either a separate model, frozen, in eval mode and prepared on the same device
(sharded by DeepSpeed ZeRO-3 like the PRM when that is on), or, for a LoRA PRM, the PRM's own
weights with the adapter disabled. With ``precompute_ref_log_probs`` one pass over the data before
training stores each response's summed reference log-prob as a column and the reference model is
released, trading one pass for the memory of a second model during training.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader
from transformers import EvalPrediction, Trainer
from trl.trainer.utils import disable_dropout_in_model, get_config_model_id

from primekit.prm.config import PAIR_LOSSES, ImplicitPRMConfig
from primekit.prm.data import ImplicitPRMCollator
from primekit.prm.implicit import is_peft_model, reference_logprobs, response_logprobs
from primekit.prm.losses import ce_loss, dpo_loss, kto_loss, kto_reference_point, nca_loss, reward_accuracy
from primekit.prm.reading import implicit_rewards, write_prm_record


def implicit_reward_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """Eval read-out of the sequence reward r(y): how well it separates correct from incorrect.

    Outcome data: ``predictions`` are r(y) and ``label_ids`` the labels. Pair data: ``predictions``
    are (chosen, rejected) rows; the chosen responses count as correct. Reports the sign accuracy
    (r > 0 predicts correct, the CE classifier), the ROC AUC (threshold-free: the chance that a
    random correct response outranks a random incorrect one; NaN with a single class), the mean
    reward of each class and, for pairs, how often chosen outranks rejected.
    """

    rewards = np.asarray(prediction.predictions, dtype=np.float64)
    metrics: dict[str, float] = {}
    if rewards.ndim == 2:
        metrics["pair_accuracy"] = float(np.mean(rewards[:, 0] > rewards[:, 1]))
        labels = np.concatenate([np.ones(len(rewards)), np.zeros(len(rewards))])
        rewards = np.concatenate([rewards[:, 0], rewards[:, 1]])
    else:
        labels = np.asarray(prediction.label_ids, dtype=np.float64)
    correct = labels == 1
    metrics["reward_accuracy"] = float(reward_accuracy(torch.from_numpy(rewards), torch.from_numpy(labels)))
    metrics["auc"] = float(roc_auc_score(labels, rewards)) if 0 < correct.sum() < len(labels) else float("nan")
    metrics["reward_correct"] = float(rewards[correct].mean()) if correct.any() else float("nan")
    metrics["reward_incorrect"] = float(rewards[~correct].mean()) if (~correct).any() else float("nan")
    return metrics


class ImplicitPRMTrainer(Trainer):
    """``Trainer`` for an implicit PRM (see the module docstring).

    ``model`` is the PRM, initialised from the policy it will judge. ``ref_model`` is the frozen
    reference; leave it None for a LoRA PRM (pass ``peft_config`` or an already wrapped PEFT model)
    to read the reference from the adapter-free base. Datasets hold the rows of
    :func:`primekit.prm.data.tokenize_outcome_samples` (ce, kto) or
    :func:`~primekit.prm.data.tokenize_pairs` (dpo, nca).
    """

    def __init__(self, model, args: ImplicitPRMConfig, ref_model=None, train_dataset=None,
                 eval_dataset=None, processing_class=None, data_collator=None, peft_config=None,
                 compute_metrics=None, callbacks=None):
        if peft_config is not None:
            from peft import get_peft_model  # heavy: loaded on use, so importing this module stays fast

            model = get_peft_model(model, peft_config)
        if args.disable_dropout:
            for module in (model, ref_model):
                if module is not None:
                    disable_dropout_in_model(module)
        if ref_model is None and not is_peft_model(model):
            raise ValueError("ImplicitPRMTrainer needs a ref_model, or a LoRA PRM whose base is the reference")
        if ref_model is model:
            raise ValueError("ref_model must be a separate, frozen copy (or None for a LoRA PRM)")
        expected = "pairs" if args.loss_type in PAIR_LOSSES else "outcome-labelled samples"
        if train_dataset is not None and ("chosen_ids" in train_dataset.column_names) != (expected == "pairs"):
            raise ValueError(f"loss_type {args.loss_type} trains on {expected}")
        pad_token_id = getattr(processing_class, "pad_token_id", None)
        self._pad_token_id = 0 if pad_token_id is None else pad_token_id  # padding is masked out anyway
        # recorded with every save (implicit_prm.json); kept apart as the reference may be released
        self._base_name = get_config_model_id(model.config)
        self._reference_name = None if ref_model is None else get_config_model_id(ref_model.config)
        if data_collator is None:
            data_collator = ImplicitPRMCollator(self._pad_token_id, kto_kl=args.loss_type == "kto")
        super().__init__(model=model, args=args, data_collator=data_collator, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class,
                         compute_metrics=compute_metrics or implicit_reward_metrics, callbacks=callbacks)
        # compute_loss returns a per-batch mean; Trainer must still divide by accumulation steps.
        self.model_accepts_loss_kwargs = False
        self._train_metrics: dict[str, list[float]] = defaultdict(list)
        self.ref_model = None if ref_model is None else self._prepare_reference(ref_model)
        if args.precompute_ref_log_probs:
            self.train_dataset = self._with_reference_logprobs(self.train_dataset)
            if isinstance(self.eval_dataset, dict):
                self.eval_dataset = {name: self._with_reference_logprobs(dataset)
                                     for name, dataset in self.eval_dataset.items()}
            else:
                self.eval_dataset = self._with_reference_logprobs(self.eval_dataset)
            self.ref_model = None  # every reference log-prob the run needs is now a column

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Trainer's save, plus ``implicit_prm.json`` (base, reference, beta, inference coef, step
        mode, EOS handling), so that the saved PRM, or any checkpoint, reads with its path alone."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            write_prm_record(output_dir or self.args.output_dir, base=self._base_name,
                             reference=self._reference_name, beta=self.args.prm_beta, coef=self.args.coef,
                             step_mode=self.args.step_mode, append_eos=self.args.append_eos)

    def _prepare_reference(self, ref_model):
        ref_model.eval()
        ref_model.requires_grad_(False)
        if self.is_deepspeed_enabled:
            from trl.models import prepare_deepspeed  # heavy: loaded on use, so importing this module stays fast

            return prepare_deepspeed(ref_model, self.accelerator)
        return self.accelerator.prepare_model(ref_model, evaluation_mode=True)

    # -- the implicit reward -------------------------------------------------------------------

    def _reference_sums(self, model, input_ids, attention_mask, completion_mask) -> torch.Tensor:
        prm = self.accelerator.unwrap_model(model)
        if self.ref_model is None and not is_peft_model(prm):
            raise ValueError("no reference: this batch has no precomputed ref_logps and the reference "
                             "model was released after precomputing")
        return reference_logprobs(prm, self.ref_model, input_ids, attention_mask, completion_mask).sum(-1)

    def _sequence_rewards(self, model, inputs: dict[str, torch.Tensor], prefix: str = "",
                          with_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """r(y) = beta * (sum log pi_prm - sum log pi_ref) over each response, with the two sums."""
        input_ids, attention_mask, completion_mask = (inputs[prefix + key] for key in
                                                      ("input_ids", "attention_mask", "completion_mask"))
        with contextlib.nullcontext() if with_grad else torch.no_grad():
            prm_sums = response_logprobs(model, input_ids, attention_mask, completion_mask).sum(-1)
        ref_sums = inputs.get(prefix + "ref_logps")
        if ref_sums is None:
            ref_sums = self._reference_sums(model, input_ids, attention_mask, completion_mask)
        ref_sums = ref_sums.to(prm_sums)
        return implicit_rewards(prm_sums - ref_sums, self.args.prm_beta), prm_sums, ref_sums

    def _loss_and_rewards(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss, the rewards to report ((B,) or, for pairs, (B, 2) chosen/rejected) and the labels."""
        rewards, _, _ = self._sequence_rewards(model, inputs)
        if self.args.loss_type in PAIR_LOSSES:
            chosen, rejected = rewards.chunk(2)
            loss = (dpo_loss if self.args.loss_type == "dpo" else nca_loss)(chosen, rejected)
            return loss, torch.stack([chosen, rejected], dim=1), torch.ones_like(chosen)
        labels = inputs["labels"].to(rewards)
        if self.args.loss_type == "ce":
            return ce_loss(rewards, labels), rewards, labels
        _, kl_prm, kl_ref = self._sequence_rewards(model, inputs, prefix="kl_", with_grad=False)
        # Like TRL's KTOTrainer, z0 comes from the mismatched pairs of every process.
        z0 = kto_reference_point(self.accelerator.gather(kl_prm), self.accelerator.gather(kl_ref),
                                 self.args.prm_beta)
        loss = kto_loss(rewards, labels, z0, self.args.desirable_weight, self.args.undesirable_weight)
        return loss, rewards, labels

    # -- Trainer hooks -------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, rewards, labels = self._loss_and_rewards(model, inputs)
        if model.training:
            self._record_train_metrics(rewards.detach(), labels)
        return (loss, {"rewards": rewards}) if return_outputs else loss

    def _record_train_metrics(self, rewards: torch.Tensor, labels: torch.Tensor) -> None:
        rewards, labels = self.accelerator.gather_for_metrics((rewards, labels))
        if rewards.dim() == 2:  # pairs
            self._train_metrics["pair_accuracy"].append(float((rewards[:, 0] > rewards[:, 1]).float().mean()))
            return
        self._train_metrics["reward_accuracy"].append(float(reward_accuracy(rewards, labels)))
        for name, selected in (("reward_correct", labels == 1), ("reward_incorrect", labels == 0)):
            if selected.any():
                self._train_metrics[name].append(float(rewards[selected].mean()))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the reward metrics averaged since the last training log line."""
        if "loss" in logs:
            logs.update({name: sum(values) / len(values) for name, values in self._train_metrics.items()})
            self._train_metrics.clear()
        super().log(logs, start_time)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss, rewards, labels = self._loss_and_rewards(model, inputs)
        if prediction_loss_only:
            return loss.detach(), None, None
        return loss.detach(), rewards.detach(), labels

    # -- precomputed reference log-probs -------------------------------------------------------

    def _with_reference_logprobs(self, dataset):
        """``dataset`` plus the summed reference log-prob of each response (one pass, no grad)."""
        if dataset is None or "ref_logps" in dataset.column_names or "ref_chosen_logps" in dataset.column_names:
            return dataset
        batch_size = self.args.precompute_ref_batch_size or self.args.per_device_eval_batch_size
        loader = self.accelerator.prepare(DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                                     collate_fn=ImplicitPRMCollator(self._pad_token_id)))
        prm = self.accelerator.unwrap_model(self.model)
        if self.ref_model is None:
            prm.to(self.accelerator.device)  # Trainer places the model itself only when training starts
        sums = []
        for batch in loader:
            with self.accelerator.autocast():
                batch_sums = self._reference_sums(prm, batch["input_ids"], batch["attention_mask"],
                                                  batch["completion_mask"])
            if "labels" not in batch:  # pairs: the chosen rows, then the rejected rows
                batch_sums = torch.stack(batch_sums.chunk(2), dim=1)
            sums.append(self.accelerator.gather_for_metrics(batch_sums).float().cpu())
        sums = torch.cat(sums)
        if "chosen_ids" in dataset.column_names:
            return (dataset.add_column("ref_chosen_logps", sums[:, 0].tolist())
                    .add_column("ref_rejected_logps", sums[:, 1].tolist()))
        return dataset.add_column("ref_logps", sums.tolist())
