"""ImplicitPRMTrainer: config checks, loss values at initialisation, metrics, reference handling."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import EvalPrediction

from primekit import toy
from primekit.prm.config import ImplicitPRMConfig
from primekit.prm.data import tokenize_outcome_samples, tokenize_pairs
from primekit.prm.implicit import ImplicitPRM
from primekit.prm.trainer import ImplicitPRMTrainer, implicit_reward_metrics

LN2 = math.log(2)


def outcome_records(n: int = 8) -> list[dict]:
    # correct iff the boxed answer is the prompt's number; alternating labels
    return [{"prompt": f"Compute {i}\n", "completion": f"\\boxed{{{i if i % 2 == 0 else i + 1}}}",
             "label": int(i % 2 == 0)} for i in range(n)]


def outcome_dataset(n: int = 8) -> Dataset:
    rows = tokenize_outcome_samples(outcome_records(n), toy.build_tokenizer(), max_length=32, append_eos=True)
    return Dataset.from_list(rows)


def pair_dataset(n: int = 4) -> Dataset:
    records = [{"prompt": f"Compute {i}\n", "chosen": f"\\boxed{{{i}}}", "rejected": f"\\boxed{{{i + 1}}}"}
               for i in range(n)]
    return Dataset.from_list(tokenize_pairs(records, toy.build_tokenizer(), max_length=32, append_eos=True))


def config(tmp_path, **overrides) -> ImplicitPRMConfig:
    settings = dict(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", disable_tqdm=True,
                    save_strategy="no", eval_strategy="no", per_device_train_batch_size=4,
                    per_device_eval_batch_size=4, max_steps=2, logging_steps=1, learning_rate=1e-3)
    settings.update(overrides)
    return ImplicitPRMConfig(**settings)


def trainer_for(tmp_path, train, eval_data=None, ref=True, **overrides) -> ImplicitPRMTrainer:
    model = toy.random_model(0)
    return ImplicitPRMTrainer(model, config(tmp_path, **overrides), ref_model=copy.deepcopy(model) if ref else None,
                              train_dataset=train, eval_dataset=eval_data, processing_class=toy.build_tokenizer())


@pytest.mark.parametrize("overrides, message", [
    ({"loss_type": "hinge"}, "loss_type"),
    ({"prm_beta": 0.0}, "prm_beta"),
    ({"eval_fraction": 1.0}, "eval_fraction"),
    ({"loss_type": "kto", "precompute_ref_log_probs": True}, "precompute"),
    ({"loss_type": "kto", "per_device_train_batch_size": 1}, "at least 2"),
])
def test_config_rejects_bad_values(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def test_kto_drops_a_last_batch_of_one(tmp_path):
    assert config(tmp_path, loss_type="kto").dataloader_drop_last


def test_metrics_hand_example():
    rewards = np.array([0.3, -0.1, 0.2, -0.5])
    labels = np.array([1.0, 0.0, 0.0, 1.0])
    metrics = implicit_reward_metrics(EvalPrediction(predictions=rewards, label_ids=labels))
    # sign predictions 1 0 1 0 vs labels 1 0 0 1 -> 2/4 right
    assert metrics["reward_accuracy"] == pytest.approx(0.5)
    # (correct, incorrect) pairs: (0.3,-0.1) win, (0.3,0.2) win, (-0.5,-0.1) lose, (-0.5,0.2) lose -> 2/4
    assert metrics["auc"] == pytest.approx(0.5)
    assert metrics["reward_correct"] == pytest.approx(-0.1)  # (0.3 - 0.5) / 2
    assert metrics["reward_incorrect"] == pytest.approx(0.05)  # (-0.1 + 0.2) / 2
    pairs = implicit_reward_metrics(EvalPrediction(predictions=np.array([[1.0, -1.0], [0.0, 0.5]]),
                                                   label_ids=np.ones(2)))
    # chosen > rejected in 1 of 2 pairs; AUC over chosen {1, 0} vs rejected {-1, 0.5}: 1>-1, 1>0.5,
    # 0>-1, 0<0.5 -> 3/4
    assert pairs["pair_accuracy"] == 0.5 and pairs["auc"] == pytest.approx(0.75)
    single = implicit_reward_metrics(EvalPrediction(predictions=rewards, label_ids=np.ones(4)))
    assert math.isnan(single["auc"])


@pytest.mark.parametrize("loss_type, expected", [
    ("ce", LN2),  # r = 0: -log sigmoid(0) = ln 2 for either label
    ("kto", 0.5),  # r = 0, z0 = 0: 1 - sigmoid(0) = 1/2 for either class
    ("dpo", LN2),  # margin 0: -log sigmoid(0)
    ("nca", 2 * LN2),  # ln 2 + 0.5 ln 2 + 0.5 ln 2
])
def test_loss_at_initialisation_equals_hand_value(tmp_path, loss_type, expected):
    data = pair_dataset() if loss_type in ("dpo", "nca") else outcome_dataset()
    trainer = trainer_for(tmp_path, data, data, loss_type=loss_type)
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] == pytest.approx(expected, abs=1e-5)
    # every reward is 0 (the PRM is its reference); the AUC of rounding noise means nothing
    assert metrics["eval_reward_correct"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["eval_reward_incorrect"] == pytest.approx(0.0, abs=1e-6)


def test_trainer_reward_equals_implicit_prm_sequence_reward(tmp_path):
    records = outcome_records(4)
    data = outcome_dataset(4)
    prm, ref = toy.random_model(1), toy.random_model(2)
    trainer = ImplicitPRMTrainer(prm, config(tmp_path, prm_beta=0.5), ref_model=ref, train_dataset=data,
                                 eval_dataset=data, processing_class=toy.build_tokenizer())
    output = trainer.predict(data)
    reader = ImplicitPRM(prm, ref, toy.build_tokenizer(), coef=0.5)
    expected = [r.sequence_reward for r in reader.rewards([r["prompt"] for r in records],
                                                          [r["completion"] for r in records])]
    assert output.predictions == pytest.approx(expected, abs=1e-5)
    # CE by hand from those rewards: mean of softplus(-r) for label 1 and softplus(r) for label 0
    rewards = torch.tensor(expected)
    labels = torch.tensor([r["label"] for r in records], dtype=torch.float)
    hand = (labels * torch.nn.functional.softplus(-rewards) + (1 - labels) * torch.nn.functional.softplus(rewards))
    assert output.metrics["test_loss"] == pytest.approx(float(hand.mean()), abs=1e-5)


def test_precomputed_reference_matches_live_reference(tmp_path):
    data = outcome_dataset(6)
    prm, ref = toy.random_model(1), toy.random_model(2)
    live = ImplicitPRMTrainer(prm, config(tmp_path), ref_model=ref, train_dataset=data, eval_dataset=data,
                              processing_class=toy.build_tokenizer())
    stored = ImplicitPRMTrainer(copy.deepcopy(prm), config(tmp_path, precompute_ref_log_probs=True),
                                ref_model=copy.deepcopy(ref), train_dataset=data, eval_dataset=data,
                                processing_class=toy.build_tokenizer())
    assert stored.ref_model is None and "ref_logps" in stored.train_dataset.column_names
    assert stored.evaluate()["eval_loss"] == pytest.approx(live.evaluate()["eval_loss"], abs=1e-6)


def test_lora_trainer_reads_reference_from_disabled_adapter(tmp_path):
    data = outcome_dataset(8)
    trainer = ImplicitPRMTrainer(toy.random_model(0), config(tmp_path, max_steps=3), ref_model=None,
                                 train_dataset=data, eval_dataset=data, processing_class=toy.build_tokenizer(),
                                 peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.5))
    dropouts = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(m.p == 0 for m in dropouts)  # disable_dropout: no noise in the log-ratio
    assert trainer.evaluate()["eval_loss"] == pytest.approx(LN2, abs=1e-6)  # LoRA B starts at 0
    trainer.train()
    assert trainer.evaluate()["eval_loss"] != pytest.approx(LN2, abs=1e-4)  # the adapter learned


def test_reference_is_required(tmp_path):
    with pytest.raises(ValueError, match="ref_model"):
        trainer_for(tmp_path, outcome_dataset(), ref=False)
    with pytest.raises(ValueError, match="pairs"):
        trainer_for(tmp_path, outcome_dataset(), loss_type="dpo")


def test_short_training_separates_a_trivial_task(tmp_path):
    data = outcome_dataset(16)
    trainer = trainer_for(tmp_path, data, data, max_steps=25, learning_rate=3e-3, prm_beta=0.5)
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_auc"] > 0.9 and metrics["eval_loss"] < LN2
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert "reward_accuracy" in logged[0] and "reward_correct" in logged[0]
