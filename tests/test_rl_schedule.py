"""What the 7B recipe changes below its algorithm: the official epoch (loader order, surplus passing
prompts buffered, the epoch ends with the loader), decay on every parameter, checkpoints counted in
RL steps, TRL's vLLM importance-sampling correction off, gradients synced every micro-batch."""

from __future__ import annotations

import pytest
import torch

from primekit.rl.config import PrimeConfig
from primekit.rl.data import OfficialEpoch
from rl_support import problems, save_tiny_policy, scripted_rollout

CPU = {"output_dir": "unused", "use_cpu": True, "bf16": False, "report_to": "none"}


def test_official_epoch_order_buffer_and_end():
    # 7 prompts, loader batches of 2 (the odd one dropped), buffered shares in multiples of 2
    epoch = OfficialEpoch(7, 2, multiple=2, shuffle=False)
    epoch.start_epoch(0)
    assert epoch.batches_per_epoch == 3
    assert epoch.next_round(first=True) == [0, 1]
    assert epoch.next_round(first=False) == [2, 3]
    epoch.keep_for_next_step([3, 1, 2])
    assert epoch.next_round(first=True) == [3, 1, 4, 5]  # two buffered (a multiple of 2), then the batch
    assert epoch.buffer == [2] and epoch.batches_left == 0
    assert epoch.next_round(first=True) is None and epoch.next_round(first=False) is None
    state = epoch.state_dict()
    again = OfficialEpoch(7, 2, multiple=2, shuffle=False)
    again.load_state_dict(state)
    assert again.state_dict() == state


def test_official_epoch_shuffles_each_pass_once():
    epoch = OfficialEpoch(10, 5, seed=3)
    epoch.start_epoch(0)
    first = epoch.next_round(first=True) + epoch.next_round(first=False)
    assert sorted(first) == list(range(10))
    epoch.start_epoch(1)
    second = epoch.next_round(first=True) + epoch.next_round(first=False)
    assert sorted(second) == list(range(10)) and second != first


def _trainer(tmp_path, patterns, callbacks=(), **overrides):
    """A PrimeTrainer on scripted groups that records the dataset index of every prompt it samples."""
    from primekit.models import load_tokenizer
    from primekit.rl.trainer import PrimeTrainer

    model_dir = save_tiny_policy(tmp_path / "policy")
    dataset, lookup = problems(patterns)
    index = {row["prompt"]: i for i, row in enumerate(dataset)}
    settings = dict(output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                    per_device_train_batch_size=8, num_generations=4, oversample_factor=1, max_completion_length=8,
                    learning_rate=1e-4, prm_learning_rate=1e-3, logging_steps=1, report_to="none",
                    save_strategy="no", shuffle_dataset=False, seed=0, disable_tqdm=True, num_train_epochs=1)
    settings.update(overrides)
    config = PrimeConfig(**settings)
    rollout = scripted_rollout(lookup, config.num_generations)
    sampled: list[int] = []

    def recording(prompts, trainer):
        sampled.extend(index[p] for p in prompts[::config.num_generations])
        return rollout(prompts, trainer)

    trainer = PrimeTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=load_tokenizer(model_dir),
                           rollout_func=recording, callbacks=list(callbacks))
    return trainer, sampled


def test_the_official_epoch_refills_from_the_loader_and_buffers_surplus(tmp_path):
    # two prompts per loader batch and per trained batch; "0110"-like groups pass [0.2, 0.8]
    patterns = ["1111", "1000", "0110", "0000", "1100", "0000", "1010", "0111", "1001", "0000"]
    trainer, sampled = _trainer(tmp_path, patterns, epoch_mode="official", max_refill_rounds=8)
    trainer.train()
    # step 1: [0, 1] -> 1 passes, [2, 3] -> 1, 2 trained; step 2: [4, 5] -> 4, [6, 7] -> 4, 6 trained and
    # 7 buffered; step 3: 7 again with [8, 9] -> 7, 8 trained; the loader is spent: the epoch ends
    assert sampled == [0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 9]
    assert trainer.state.global_step == 3  # TRL's sampler would have run 10 / 2 = 5 steps
    rounds = [entry["prime/generation_rounds"] for entry in trainer.state.log_history if "prime/generation_rounds" in entry]
    assert rounds == [2.0, 2.0, 1.0]


def test_an_epoch_that_runs_out_mid_step_does_not_train_on_its_last_batch(tmp_path):
    from transformers import TrainerCallback

    weights = []

    class AfterEachStep(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            weights.append({name: p.detach().clone() for name, p in model.named_parameters()})

    patterns = ["1000", "0110", "0000", "0000", "1100", "0000", "0000", "1111"]
    trainer, sampled = _trainer(tmp_path, patterns, callbacks=[AfterEachStep()], epoch_mode="official",
                                max_refill_rounds=8, weight_decay=0.1)
    trainer.train()
    assert sampled == list(range(8))
    assert trainer.state.global_step == 2  # the second step ran out with 1 of 2 groups passing
    for name, value in weights[0].items():
        assert torch.equal(weights[1][name], value), f"{name} moved in the untrained last step"
    assert trainer.prm_optimizer.state[next(iter(trainer.prm.parameters()))]["step"] == 1  # one PRM step only


def test_decay_on_every_parameter(tmp_path):
    trainer, _ = _trainer(tmp_path, ["1000"] * 4, weight_decay_parameters="all", weight_decay=0.01)
    optimizer = trainer.create_optimizer()
    decayed = {id(p) for group in optimizer.param_groups if group["weight_decay"] == 0.01 for p in group["params"]}
    named = dict(trainer.model.named_parameters())
    assert any(name.endswith("bias") for name in named) and any("norm" in name for name in named)
    assert decayed == {id(p) for p in named.values() if p.requires_grad}
    default, _ = _trainer(tmp_path / "default", ["1000"] * 4, weight_decay=0.01)
    undecayed = [p for group in default.create_optimizer().param_groups if group["weight_decay"] == 0 for p in group["params"]]
    assert undecayed  # the HF Trainer's groups leave biases and norms out


def test_checkpoints_are_counted_in_rl_steps_and_sync_is_per_micro_batch():
    # 4 optimizer steps per RL step: steps_per_generation 8 micro-steps over accumulation 2
    config = PrimeConfig(**CPU, per_device_train_batch_size=4, gradient_accumulation_steps=2, steps_per_generation=8,
                         oversample_factor=1, save_every_rl_steps=16)
    assert config.optimizer_steps_per_rl_step == 4
    assert (config.save_strategy, config.save_steps) == ("steps", 64)
    assert config.accelerator_config.gradient_accumulation_kwargs == {"sync_each_batch": True}
    assert not config.vllm_importance_sampling_correction
    off = PrimeConfig(**CPU, sync_gradients_each_micro_batch=False)
    assert off.accelerator_config.gradient_accumulation_kwargs == {"sync_each_batch": False}


@pytest.mark.parametrize("field, value, message", [
    ("epoch_mode", "random", "epoch_mode must be one of official, sampler"),
    ("weight_decay_parameters", "some", "weight_decay_parameters must be one of all, no_bias_norm"),
    ("fsdp_reduce_dtype", "bf16", "fsdp_reduce_dtype must be one of float32, param_dtype"),
    ("save_every_rl_steps", 0, "save_every_rl_steps must be >= 1"),
])
def test_schedule_options_are_checked(field, value, message):
    with pytest.raises(ValueError, match=message):
        PrimeConfig(**CPU, **{field: value})
