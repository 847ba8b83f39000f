"""What the 7B run depends on, checked at toy scale on CPU: fp32 master weights under bf16 compute,
q = 0 at initialisation whatever the padding, ``prm_update: after`` without a second PRM forward,
refill sampling, the prompt cap and the start-up refusals (one line each)."""

from __future__ import annotations

import pytest
import torch

from primekit.models import load_tokenizer
from rl_support import build_trainer, first_batch, problems, save_tiny_policy

#: The 7B recipe's precision settings: weights loaded in fp32, bf16 compute (autocast on CPU).
RECIPE_PRECISION = {"bf16": True, "model_init_kwargs": {"dtype": "float32"}}


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory) -> str:
    return save_tiny_policy(tmp_path_factory.mktemp("policy"))


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _relative_steps(before: dict[str, torch.Tensor], model: torch.nn.Module, lr: float) -> torch.Tensor:
    """|w_after - w_before| / lr over every parameter entry."""
    after = _weights(model)
    return torch.cat([((after[name] - value).abs() / lr).flatten() for name, value in before.items()])


def _record_q(trainer) -> list[torch.Tensor]:
    """Capture the q (log-ratio) rows each PRIME step computes."""
    recorded = []
    step = trainer._prm_step

    def recording(*args, **kwargs):
        q, predicted, metrics = step(*args, **kwargs)
        recorded.append(q.detach().clone())
        return q, predicted, metrics

    trainer._prm_step = recording
    return recorded


# ------------------------------------------------------------------------------------------------
# precision


@pytest.mark.slow
def test_one_step_at_lr_5e7_moves_fp32_master_weights_by_about_lr(tiny_policy, tmp_path):
    lr, prm_lr = 5e-7, 1e-6
    trainer = build_trainer(tiny_policy, ["1000", "0110"], tmp_path, learning_rate=lr, prm_learning_rate=prm_lr,
                            prm_update="before", **RECIPE_PRECISION)
    assert trainer.accelerator.mixed_precision == "bf16" and trainer.model.dtype == torch.float32
    policy, prm = _weights(trainer.model), _weights(trainer.accelerator.unwrap_model(trainer.prm))
    trainer.train()
    # Adam's first step moves every weight with a gradient by lr * g / |g| = lr (weight decay adds
    # lr * 0.01 * |w|, about 1e-4 of that); in bf16 the same update would round to nothing.
    policy_steps = _relative_steps(policy, trainer.model, lr)
    prm_steps = _relative_steps(prm, trainer.accelerator.unwrap_model(trainer.prm), prm_lr)
    for steps in (policy_steps, prm_steps):
        moved = steps[steps > 0.5]
        assert len(moved) > 0.9 * len(steps)
        assert moved.median().item() == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("dtype, distributed_type, mixed_precision, refused", [
    (torch.bfloat16, "NO", "bf16", True),           # one process steps the bf16 weights themselves
    (torch.float16, "MULTI_GPU", "fp16", True),     # so does DDP
    (torch.bfloat16, "FSDP", "no", True),           # FSDP2 without mixed precision keeps them in bf16
    (torch.bfloat16, "FSDP", "bf16", False),        # FSDP2's mixed precision upcasts to fp32 master weights
    (torch.bfloat16, "DEEPSPEED", "bf16", False),   # DeepSpeed's optimizer keeps fp32 master weights
    (torch.float32, "NO", "bf16", False),           # fp32 weights under bf16 autocast
])
def test_master_precision_check_by_backend(dtype, distributed_type, mixed_precision, refused):
    from accelerate.utils import DistributedType

    from primekit.errors import InputError
    from primekit.rl.prm_update import check_master_precision

    model = torch.nn.Linear(4, 4).to(dtype)
    model.bias.requires_grad_(False)
    arguments = (model, "PRM", DistributedType[distributed_type], mixed_precision)
    if not refused:
        check_master_precision(*arguments)
        return
    with pytest.raises(InputError, match=f"PRM's trained parameters are {str(dtype).removeprefix('torch.')}"):
        check_master_precision(*arguments)
    model.requires_grad_(False)  # frozen parameters are never stepped
    check_master_precision(*arguments)


def test_bf16_trained_parameters_with_a_plain_optimizer_are_refused(tiny_policy, tmp_path):
    with pytest.raises(ValueError, match="policy's trained parameters are bfloat16 and AdamW would step them"):
        build_trainer(tiny_policy, ["1000"], tmp_path, bf16=True, model_init_kwargs={"dtype": "bfloat16"})


def test_the_cli_refuses_bf16_weights_in_one_line(tiny_policy, tmp_path, capsys):
    from primekit.cli import dispatch

    dataset = tmp_path / "problems.jsonl"
    dataset.write_text('{"prompt": "Compute 1+2\\n", "answer": "3"}\n' * 8)
    code = dispatch("prime-rl", ["train", "--model", tiny_policy, "--dataset", str(dataset), "--heldout", "none",
                                 "--output_dir", str(tmp_path / "run"), "--use_cpu", "true", "--bf16", "true",
                                 "--model_init_kwargs", '{"dtype": "bfloat16"}', "--per_device_train_batch_size", "8",
                                 "--max_steps", "1", "--report_to", "none"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and "trained parameters are bfloat16" in errors[0]


# ------------------------------------------------------------------------------------------------
# the PRM's reference


@pytest.mark.parametrize("mode", ["none", "after"])
def test_q_is_exactly_zero_at_initialisation_with_mixed_prompt_lengths_in_bf16(tiny_policy, tmp_path, mode):
    # Prompts of three lengths, oversampled 2x: the kept rows are regrouped and re-padded, and the
    # KL reference (beta > 0) is the very model the PRM's reference shares. Its log-probs must be
    # recomputed on the PRM's rows: in bf16 another padding gives other numbers, and q would not
    # be 0 for a PRM that still equals its reference.
    # The groups that fail the band have the longest prompts, so the kept rows are re-padded narrower.
    trainer = build_trainer(tiny_policy, ["1000", "0110", "1111", "1100", "1010", "0000", "0100", "1110"], tmp_path,
                            varied_lengths=True, oversample_factor=2, beta=0.001, prm_update=mode,
                            prm_micro_batch_size=3, **RECIPE_PRECISION)
    assert trainer.prm_ref is trainer.ref_model
    recorded = _record_q(trainer)
    output = first_batch(trainer)
    assert output["prompt_mask"].sum(dim=1).unique().numel() > 1, "the kept rows need several prompt lengths"
    assert output["prompt_mask"].all(dim=0).sum() < output["prompt_mask"].shape[1], "rows are left-padded"
    (q,) = recorded
    assert torch.equal(q, torch.zeros_like(q))


# ------------------------------------------------------------------------------------------------
# the PRM update


def _count_prm_forwards(trainer) -> list[int]:
    calls = [0]
    forward = trainer._completion_logps

    def counting(model, batch, rows=slice(None)):
        if model is trainer.prm:
            calls[0] += 1
        return forward(model, batch, rows)

    trainer._completion_logps = counting
    return calls


@pytest.mark.parametrize("mode, forwards", [("after", 4), ("before", 5)])
def test_after_rewards_with_the_training_forward_and_before_scores_again(tiny_policy, tmp_path, mode, forwards):
    # 16 rows, PRM mini-batches of 8 in micro-batches of 4: four training forwards; 'before'
    # scores the batch once more with the updated PRM, 'after' reuses the training forwards.
    trainer = build_trainer(tiny_policy, ["1000", "0110", "1100", "0100"], tmp_path, per_device_train_batch_size=16,
                            prm_update=mode, prm_mini_batch_size=8, prm_micro_batch_size=4)
    calls = _count_prm_forwards(trainer)
    recorded = _record_q(trainer)
    first_batch(trainer)
    assert calls[0] == forwards
    (q,) = recorded
    if mode == "after":
        # mini-batch 1 was rewarded by the initial PRM (= its reference), mini-batch 2 by the PRM
        # after one optimizer step
        assert torch.equal(q[:8], torch.zeros_like(q[:8]))
        assert q[8:].abs().sum() > 0
    else:
        assert q[:8].abs().sum() > 0 and q[8:].abs().sum() > 0
    assert "time/prm_score" in trainer._metrics["train"] if mode == "before" else \
        "time/prm_score" not in trainer._metrics["train"]


def test_each_prm_forward_is_cut_to_its_own_micro_batch(tiny_policy, tmp_path):
    # Prompts of three lengths and truncated (shorter) responses: at one row per micro-batch, as in
    # the 7B recipe, no PRM or reference forward computes a single padding token.
    trainer = build_trainer(tiny_policy, ["100t", "0110", "1t00", "0100"], tmp_path, varied_lengths=True,
                            per_device_train_batch_size=16, prm_update="before", prm_mini_batch_size=8,
                            prm_micro_batch_size=1)
    masks = []
    forward = trainer._get_per_token_logps_and_entropies

    def recording(model, input_ids, attention_mask, *args, **kwargs):
        if model is trainer.prm or model is trainer.prm_ref:
            masks.append(attention_mask)
        return forward(model, input_ids, attention_mask, *args, **kwargs)

    trainer._get_per_token_logps_and_entropies = recording
    output = first_batch(trainer)
    assert not output["prompt_mask"].all() and not output["completion_mask"].all(), "the batch itself is padded"
    assert len(masks) == 3 * 16  # reference, update and scoring pass, one row each
    assert all(mask.shape[0] == 1 and mask.all() for mask in masks)


def test_each_policy_micro_batch_is_cut_to_its_own_rows(tiny_policy, tmp_path):
    # One response per policy micro-batch (the 7B recipe's per_device_train_batch_size 1): TRL
    # buffers the step's batch padded to its longest row; the loss sees each row unpadded.
    trainer = build_trainer(tiny_policy, ["100t", "0110"], tmp_path, varied_lengths=True,
                            per_device_train_batch_size=1, gradient_accumulation_steps=8)
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    micro_batches = []
    for step in range(8):
        trainer._step = step
        micro_batches.append(trainer._prepare_inputs(batch))
    buffered = trainer._buffered_inputs
    assert any(not (b["prompt_mask"].all() and b["completion_mask"].all()) for b in buffered), "TRL pads them"
    for inputs in micro_batches:
        assert inputs["prompt_mask"].all() and inputs["completion_mask"].all()
        assert inputs["advantages"].shape == inputs["completion_ids"].shape


# ------------------------------------------------------------------------------------------------
# sampling


def test_refill_samples_again_until_the_batch_is_full_of_passing_groups(tiny_policy, tmp_path):
    # Trained: 2 prompts. The first generation batch holds the two groups that fail the band
    # ("1111", "0000"); the refill rounds draw from the rest, which all pass.
    patterns = ["1111", "0000"] + ["1000", "0110", "1100", "0100", "1010", "0010"]
    trainer = build_trainer(tiny_policy, patterns, tmp_path, max_refill_rounds=4, train_on_failing=False)
    output = first_batch(trainer)
    metrics = trainer._metrics["train"]
    assert metrics["prime/generation_rounds"][0] >= 2
    assert metrics["prime/filter/kept_failing"] == [0.0]
    assert output["completion_mask"].sum(dim=1).min() > 0  # no row was zeroed as filler
    answers = trainer.processing_class.batch_decode(output["prompt_ids"], skip_special_tokens=True)
    assert not {"Compute 10+20\n", "Compute 11+22\n"} & set(answers)


def test_without_refill_failing_groups_fill_the_batch(tiny_policy, tmp_path):
    trainer = build_trainer(tiny_policy, ["1111", "0000", "1000", "0110"], tmp_path, train_on_failing=False)
    first_batch(trainer)
    metrics = trainer._metrics["train"]
    assert metrics["prime/generation_rounds"] == [1.0] and metrics["prime/filter/kept_failing"] == [1.0]


def test_prompts_over_max_prompt_length_are_dropped_before_training(tiny_policy, tmp_path):
    patterns = ["1000"] * 6
    dataset, _ = problems(patterns, varied_lengths=True)
    tokenizer = load_tokenizer(tiny_policy)
    lengths = [len(tokenizer(p)["input_ids"]) for p in dataset["prompt"]]
    trainer = build_trainer(tiny_policy, patterns, tmp_path, varied_lengths=True, max_prompt_length=min(lengths))
    assert list(trainer.train_dataset["prompt"]) == [p for p, n in zip(dataset["prompt"], lengths) if n == min(lengths)]
    with pytest.raises(ValueError, match="longer than max_prompt_length=1"):
        build_trainer(tiny_policy, patterns, tmp_path, max_prompt_length=1)


# ------------------------------------------------------------------------------------------------
# backends


def test_a_trained_prm_under_deepspeed_is_refused_in_one_line_naming_the_fsdp_config(tiny_policy, tmp_path):
    from accelerate.utils import DistributedType

    trainer = build_trainer(tiny_policy, ["1000"], tmp_path, process_reward_coef=0.0)  # loads no PRM
    trainer.args.process_reward_coef = 5.0
    trainer.accelerator.state.distributed_type = DistributedType.DEEPSPEED
    try:
        with pytest.raises(ValueError) as raised:
            trainer._load_prm()
    finally:
        trainer.accelerator.state.distributed_type = DistributedType.NO
    message = str(raised.value)
    assert "\n" not in message and "recipes/accelerate/fsdp2_8gpu.yaml" in message
