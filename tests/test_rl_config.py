"""PrimeConfig defaults and checks, and the `prime-rl train` option errors (one line, exit 2,
before any model is loaded)."""

from __future__ import annotations

import pytest

from primekit.cli import dispatch
from primekit.config import latest_checkpoint
from primekit.rl.commands import DEFAULT_RECIPE, parse_train_args
from primekit.rl.config import PrimeConfig

CPU = {"output_dir": "unused", "use_cpu": True, "bf16": False, "report_to": "none"}


def test_defaults_are_the_official_recipe():
    config = PrimeConfig(**CPU)
    assert (config.prm_beta, config.prm_learning_rate, config.prm_grad_clip, config.prm_weight_decay) == (0.05, 1e-6, 10.0, 0.0)
    assert (config.process_reward_coef, config.outcome_reward_coef) == (5.0, 5.0)
    assert (config.accuracy_lower, config.accuracy_upper, config.oversample_factor) == (0.2, 0.8, 4.0)
    assert (config.prm_update, config.reward_granularity, config.prime_norm) == ("after", "token", "batch_norm")
    assert (config.prime_norm_scope, config.filter_truncated, config.max_refill_rounds) == ("rank", False, 0)
    assert (config.num_generations, config.temperature, config.learning_rate) == (4, 1.0, 5e-7)
    assert (config.scale_rewards, config.loss_type, config.weight_decay) == ("none", "grpo", 0.01)
    assert config.uses_prm and not PrimeConfig(**CPU, process_reward_coef=0).uses_prm


def test_generation_batch_is_the_trained_batch_times_oversampling():
    # trained: 8 per device x 2 accumulation steps = 16 responses (4 prompts); sampled: 4 x 16 = 64
    config = PrimeConfig(**CPU, per_device_train_batch_size=8, gradient_accumulation_steps=2, oversample_factor=4)
    assert (config.trained_batch_size, config.generation_batch_size, config.steps_per_generation) == (16, 64, 2)
    assert PrimeConfig(**CPU, per_device_train_batch_size=8, oversample_factor=1.5).generation_batch_size == 12


@pytest.mark.parametrize("overrides, message", [
    ({"accuracy_lower": -0.1}, "accuracy_lower must lie in [0, 1]"),
    ({"accuracy_upper": 1.5}, "accuracy_upper must lie in [0, 1]"),
    ({"accuracy_lower": 0.9, "accuracy_upper": 0.5}, "is above accuracy_upper"),
    ({"num_generations": 1, "per_device_train_batch_size": 4}, "num_generations must be >= 2"),
    ({"prm_update": "sometimes"}, "prm_update must be one of before, after, none"),
    ({"prime_norm": "layer_norm"}, "prime_norm must be one of"),
    ({"loss_type": "luspo"}, "loss_type must be one of"),
    ({"process_reward_coef": 0.0, "outcome_reward_coef": 0.0}, "nothing to learn from"),
    ({"oversample_factor": 0.5}, "oversample_factor must be >= 1"),
    ({"generation_batch_size": 64}, "generation_batch_size is derived"),
    ({"per_device_train_batch_size": 6}, "must be divisible by num_generations"),  # TRL's check
    ({"per_device_train_batch_size": 8, "oversample_factor": 1.3}, "whole numbers"),
    ({"per_device_train_batch_size": 8, "prm_mini_batch_size": 3}, "prm_mini_batch_size"),
])
def test_bad_values_raise_one_line(overrides, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        PrimeConfig(**{**CPU, "per_device_train_batch_size": 8, **overrides})
    assert "\n" not in str(info.value)


def test_recipes_parse():
    run, config = parse_train_args([])  # no --config: the toy recipe
    assert DEFAULT_RECIPE.is_file() and run.dataset == "toy" and config.use_cpu
    assert (config.trained_batch_size, config.generation_batch_size) == (256, 512)
    # the 7B recipe itself is checked line by line in test_recipes.py


def _cli_error(capsys, args: list[str]) -> str:
    assert dispatch("prime-rl", ["train", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_cli_reports_bad_options_before_loading_anything(capsys, monkeypatch, tmp_path):
    def no_loading(*_args, **_kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr("primekit.models.resolve_model_name", no_loading)
    assert "accuracy_upper must lie in [0, 1]" in _cli_error(capsys, ["--accuracy_upper", "1.2"])
    assert "num_generations must be >= 2" in _cli_error(capsys, ["--num_generations", "1"])
    assert "prm_update must be one of" in _cli_error(capsys, ["--prm_update", "never"])
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("use_cpu: true\nbf16: false\nprm_betta: 0.1\n")
    assert f"{recipe}:3: unknown option 'prm_betta'" in _cli_error(capsys, ["--config", str(recipe)])
    assert "data.jsonl: file not found" in _cli_error(capsys, ["--dataset", str(tmp_path / "data.jsonl")])


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    for step, complete in [(2, True), (4, True), (10, False)]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert latest_checkpoint(tmp_path / "missing") is None


def test_prm_options_share_the_other_clis_names_and_old_names_still_parse(capsys):
    _, config = parse_train_args(["--prm", "runs/prm", "--prm_ref", "sft", "--output_dir", "unused"])
    assert (config.prm, config.prm_ref) == ("runs/prm", "sft")
    _, config = parse_train_args(["--prm_model_name_or_path", "runs/prm", "--prm_ref_model_name_or_path", "sft",
                                  "--output_dir", "unused"])
    assert (config.prm, config.prm_ref) == ("runs/prm", "sft")
    warnings = capsys.readouterr().err
    assert "'--prm_model_name_or_path' (command-line option) is deprecated" in warnings and "use '--prm'" in warnings
