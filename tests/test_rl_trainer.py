"""PrimeTrainer on scripted responses: filtering, advantages (hand-computed), the PRM update, and the
pieces it is made of (batch regrouping, verifier, prompt datasets)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from primekit.errors import InputError
from primekit.rl.batch import row_assignment, trim_columns, truncated_rows
from primekit.rl.data import PromptFormat, load_prompt_dataset
from primekit.rl.verifier import completion_text, outcome_accuracy
from primekit import toy
from primekit.cli import dispatch
from primekit.models import load_tokenizer
from primekit.rl.heldout import HeldOutAccuracy, plot_training_curve
from primekit.rl.progress import progress_line
from rl_support import RESPONSE_TOKENS, build_trainer, first_batch, save_tiny_policy, write_cli_recipe


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory) -> str:
    return save_tiny_policy(tmp_path_factory.mktemp("policy"))


def _decoded_answers(trainer, output) -> list[str]:
    tokenizer = trainer.processing_class
    return [tokenizer.decode(ids[mask.bool()], skip_special_tokens=True)
            for ids, mask in zip(output["completion_ids"], output["completion_mask"])]


def _row_advantage(output, row: int) -> torch.Tensor:
    values = output["advantages"][row][output["completion_mask"][row].bool()]
    assert torch.allclose(values, values[0].expand_as(values)), "an outcome-only return is constant per row"
    return values[0]


# ------------------------------------------------------------------------------------------------
# outcome-only RLOO (process_reward_coef 0): the trainer feeds the right rows to the math


def test_rloo_advantages_match_hand_computation(tiny_policy, tmp_path):
    trainer = build_trainer(tiny_policy, ["1000", "1000"], tmp_path, process_reward_coef=0.0)
    assert trainer.prm is None and trainer.prm_ref is None  # the baseline loads no PRM
    output = first_batch(trainer)
    # Outcome RLOO x5: right = 5*(1 - 0) = 5, wrong = 5*(0 - 1/3) = -5/3, on every one of the 5
    # tokens (returns-to-go of a last-token reward). 40 tokens: sum 2*(5*5 - 15*5/3) = 0, so mean 0;
    # sum of squares 2*(5*25 + 15*25/9) = 333.33, unbiased variance 333.33/39 = 8.5470, std 2.92352.
    # Whitened: 5/2.92352 = 1.71026 and -1.66667/2.92352 = -0.57009.
    right, wrong = 1.71026, -0.57009
    for row in range(8):
        expected = right if row % 4 == 0 else wrong
        assert _row_advantage(output, row).item() == pytest.approx(expected, abs=1e-4)
    assert int(output["num_items_in_batch"]) == 8 * RESPONSE_TOKENS


def test_oversampling_keeps_the_groups_in_the_accuracy_band(tiny_policy, tmp_path):
    # 4 groups sampled, 2 trained: "1111" and "0000" lie outside [0.2, 0.8] and are dropped.
    trainer = build_trainer(tiny_policy, ["1000", "1111", "0000", "1100"], tmp_path, process_reward_coef=0.0,
                            oversample_factor=2)
    output = first_batch(trainer)
    assert output["completion_ids"].shape[0] == 8
    assert _decoded_answers(trainer, output) == ["\\boxed{30}", "\\boxed{31}", "\\boxed{31}", "\\boxed{31}",
                                                 "\\boxed{39}", "\\boxed{39}", "\\boxed{30}", "\\boxed{30}"]
    # RLOO x5: group "1000" -> 5, -5/3 x3; group "1100" -> 5*(1 - 1/3) = 10/3 x2, 5*(0 - 2/3) = -10/3 x2.
    # 40 tokens, sum 5*(5 - 5 + 10/3*2 - 10/3*2) = 0; squares 5*(25 + 3*25/9 + 4*100/9) = 5*77.778
    # = 388.89, variance /39 = 9.97151, std 3.15777: 5/3.15777 = 1.58339, -1.66667/3.15777 = -0.52780,
    # 3.33333/3.15777 = 1.05560.
    expected = [1.58339, -0.52780, -0.52780, -0.52780, 1.05560, 1.05560, -1.05560, -1.05560]
    assert [round(_row_advantage(output, row).item(), 4) for row in range(8)] == pytest.approx(expected, abs=1e-4)
    metrics = trainer._metrics["train"]
    assert metrics["prime/filter/outside_band"] == [0.5]
    assert metrics["prime/filter/passing"] == [0.5]


def test_failing_fill_groups_get_zero_weight_unless_trained_on(tiny_policy, tmp_path):
    patterns = ["1111", "1000", "0000", "0000"]  # only "1000" passes; "1111" fills the batch
    dropped = first_batch(build_trainer(tiny_policy, patterns, tmp_path / "a", process_reward_coef=0.0,
                                        oversample_factor=2, train_on_failing=False))
    # kept order: passing group first, then the first failing one
    assert dropped["completion_mask"][:4].sum() == 4 * RESPONSE_TOKENS
    assert dropped["completion_mask"][4:].sum() == 0 and dropped["advantages"][4:].abs().sum() == 0
    assert int(dropped["num_items_in_batch"]) == 4 * RESPONSE_TOKENS
    # whitening over the 20 tokens of "1000" alone: squares 125 + 41.667, variance 166.67/19 = 8.7719,
    # std 2.96174, so the right answer gets 5/2.96174 = 1.68820.
    assert _row_advantage(dropped, 0).item() == pytest.approx(1.68820, abs=1e-4)

    kept = first_batch(build_trainer(tiny_policy, patterns, tmp_path / "b", process_reward_coef=0.0,
                                     oversample_factor=2, train_on_failing=True))
    # the all-right group now counts with zero returns: variance 166.67/39 = 4.2735, std 2.06725,
    # right answer 5/2.06725 = 2.41868; the "1111" rows stay at (0 - mean 0)/std = 0.
    assert int(kept["num_items_in_batch"]) == 8 * RESPONSE_TOKENS
    assert _row_advantage(kept, 0).item() == pytest.approx(2.41868, abs=1e-4)
    assert kept["advantages"][4:].abs().max() < 1e-6


def test_truncated_groups_fail_the_filter(tiny_policy, tmp_path):
    # "10t0" holds a response without EOS: its group is treated like one outside the band
    trainer = build_trainer(tiny_policy, ["10t0", "1100"], tmp_path, process_reward_coef=0.0, filter_truncated=True,
                            oversample_factor=2, train_on_failing=False, per_device_train_batch_size=4)
    output = first_batch(trainer)
    assert _decoded_answers(trainer, output)[:2] == ["\\boxed{33}", "\\boxed{33}"]
    assert trainer._metrics["train"]["prime/filter/truncated"] == [0.5]


# ------------------------------------------------------------------------------------------------
# the implicit PRM


def _prm_parameters(trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.accelerator.unwrap_model(trainer.prm).parameters()]


def test_prm_update_before_scoring_learns_the_outcome(tiny_policy, tmp_path):
    trainer = build_trainer(tiny_policy, ["1111", "1000"], tmp_path, filter_accuracy=False, prm_update="before")
    initial = _prm_parameters(trainer)
    output = first_batch(trainer)
    metrics = trainer._metrics["train"]
    # The PRM starts equal to its reference, so q = 0, r = 0 and CE = ln 2 for every response;
    # r = 0 predicts "wrong", which is right for the 3 wrong responses of 8; all pairs tie (0.5).
    assert metrics["prm/loss"] == [pytest.approx(math.log(2), abs=1e-6)]
    assert metrics["prm/accuracy"] == [pytest.approx(3 / 8)]
    assert metrics["prm/pairwise_accuracy"] == [pytest.approx(0.5)]
    assert any(not torch.equal(a, b) for a, b in zip(initial, _prm_parameters(trainer)))
    # After one step the updated PRM already ranks the right response of "1000" above the wrong
    # ones, and process rewards make the all-right group's advantages differ between responses.
    with torch.no_grad():
        q = trainer._completion_logps(trainer.prm, output) - trainer._completion_logps(trainer.prm_ref, output)
    sequence = q.sum(dim=1)
    assert sequence[4] > sequence[5:8].max()
    uniform_group = output["advantages"][:4][output["completion_mask"][:4].bool()]
    assert uniform_group.std() > 1e-3


def test_frozen_prm_at_initialisation_equals_rloo(tiny_policy, tmp_path):
    frozen = build_trainer(tiny_policy, ["1000", "1100"], tmp_path / "a", prm_update="none")
    initial = _prm_parameters(frozen)
    prime = first_batch(frozen)
    assert all(torch.equal(a, b) for a, b in zip(initial, _prm_parameters(frozen)))
    assert frozen.prm_optimizer is None
    rloo = first_batch(build_trainer(tiny_policy, ["1000", "1100"], tmp_path / "b", process_reward_coef=0.0))
    # the frozen PRM is its reference, so q = 0 and only the outcome stream is left
    torch.testing.assert_close(prime["advantages"], rloo["advantages"], atol=1e-6, rtol=0)


def test_prm_update_after_scores_with_the_old_prm(tiny_policy, tmp_path):
    trainer = build_trainer(tiny_policy, ["1000", "1100"], tmp_path, prm_update="after")
    output = first_batch(trainer)
    rloo = first_batch(build_trainer(tiny_policy, ["1000", "1100"], tmp_path / "b", process_reward_coef=0.0))
    # scored before the update, by a PRM equal to its reference: the advantages are RLOO's...
    torch.testing.assert_close(output["advantages"], rloo["advantages"], atol=1e-6, rtol=0)
    # ...and the PRM still learned from the batch afterwards
    assert trainer._metrics["train"]["prm/loss"] == [pytest.approx(math.log(2), abs=1e-6)]


# ------------------------------------------------------------------------------------------------
# what a run reports


def test_console_shows_one_progress_line_per_step_and_the_log_keeps_every_metric(tiny_policy, tmp_path, capsys):
    trainer = build_trainer(tiny_policy, ["1100", "1000"], tmp_path, filter_accuracy=False, max_steps=2)
    capsys.readouterr()
    trainer.train()
    out = capsys.readouterr().out
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(steps) == 2, out
    number = r"-?\d+(\.\d+)?(e-?\d+)?"
    for step, line in enumerate(steps, start=1):
        assert re.fullmatch(rf"step {step}/2 \| acc {number} \| prm acc {number} \| prm pairwise {number} \| "
                            rf"loss {number} \| len \d+ \| {number} s/step", line), line
    assert "trained 2 steps in" in out
    assert "{" not in out and "'loss'" not in out  # TRL's raw metric dict is not printed
    # every metric still reaches the trainer state's log history (trainer_state.json) and report_to
    logged = trainer.state.log_history[0]
    for key in ("loss", "reward", "kl" if trainer.beta else "reward_std", "completions/mean_length", "prm/loss",
                "prm/accuracy", "prm/pairwise_accuracy", "prime/trained_accuracy", "prime/filter/passing",
                "time/generate_and_verify", "time/prm_update", "learning_rate", "grad_norm"):
        assert key in logged, key
    assert "train_runtime" in trainer.state.log_history[-1]


def test_progress_line_of_the_closing_summary_and_of_an_evaluation():
    assert progress_line({"train_runtime": 12.34, "train_loss": 0.5, "epoch": 1.0}, 2, 2, None) == \
        "trained 2 steps in 12 s | loss 0.5"
    assert progress_line({"eval_reward": 0.25, "eval_loss": 0.125}, 4, 8, None) == \
        "eval at step 4 | acc 0.25 | loss 0.125"
    assert progress_line({"reward": 0.5, "prm/accuracy": float("nan"), "kl": None}, 3, 9, 1.5) == \
        "step 3/9 | acc 0.50 | 1.5 s/step"
    assert progress_line({"learning_rate": 1e-6}, 3, 9, 1.0) is None


# ------------------------------------------------------------------------------------------------
# building blocks


def test_row_assignment_splits_each_mini_batch_over_processes():
    # 8 rows, mini-batches of 4 over 2 processes: p0 = [0, 1] + [4, 5], p1 = [2, 3] + [6, 7]
    assert row_assignment(8, 4, 2).tolist() == [[0, 1, 4, 5], [2, 3, 6, 7]]
    assert row_assignment(6, 6, 1).tolist() == [[0, 1, 2, 3, 4, 5]]
    with pytest.raises(ValueError):
        row_assignment(8, 3, 1)


def test_truncated_rows_and_trim():
    eos = 9
    ids = torch.tensor([[5, 9, 0, 0], [5, 5, 5, 5], [5, 5, 0, 0], [0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]])
    assert truncated_rows(ids, mask, [eos]).tolist() == [False, True, True, True]
    batch = {"prompt_ids": torch.tensor([[0, 0, 3], [0, 2, 3]]), "prompt_mask": torch.tensor([[0, 0, 1], [0, 1, 1]]),
             "completion_ids": torch.tensor([[4, 9, 0], [9, 0, 0]]),
             "completion_mask": torch.tensor([[1, 1, 0], [1, 0, 0]])}
    trimmed = trim_columns(batch)
    assert trimmed["prompt_ids"].tolist() == [[0, 3], [2, 3]]
    assert trimmed["completion_ids"].tolist() == [[4, 9], [9, 0]]


def test_verifier_grades_strings_and_chat_messages():
    completions = ["37+58=95\n\\boxed{95}", "\\boxed{94}", [{"role": "assistant", "content": "so \\boxed{12}"}]]
    assert outcome_accuracy(completions, ["95", "95", "12"]) == [1.0, 0.0, 1.0]
    assert completion_text([]) == ""
    with pytest.raises(ValueError):
        outcome_accuracy(["\\boxed{1}"], ["1", "2"])


def test_prompt_dataset_from_jsonl_with_nested_answer(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"question": "What is 2+2?", "meta": {"gold": 4}}, {"question": "And 3+3?", "meta": {"gold": ["6", "six"]}}]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    data = load_prompt_dataset(str(path), prompt_field="question", answer_field="meta.gold",
                               prompt_format=PromptFormat("{problem} Put the answer in \\boxed{{}}.", chat=True))
    assert data["answer"] == ["4", "6"]
    assert data["prompt"][0] == [{"role": "user", "content": "What is 2+2? Put the answer in \\boxed{}."}]


def test_prompt_dataset_names_file_line_and_field(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"prompt": "1+1", "answer": "2"}) + "\n" + json.dumps({"prompt": "2+2"}) + "\n")
    with pytest.raises(InputError, match=r"train.jsonl:2: field 'answer': missing"):
        load_prompt_dataset(str(path))


def test_heldout_evaluation_leaves_training_untouched(tiny_policy, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_policy)
    model.train()
    problems = toy.test_problems(6)
    callback = HeldOutAccuracy([p.prompt for p in problems], [p.answer for p in problems], load_tokenizer(tiny_policy),
                               temperature=1.0, max_new_tokens=6, responses_per_step=32)
    rng = torch.get_rng_state()
    point = callback.evaluate(model, step=3)
    assert torch.equal(rng, torch.get_rng_state()) and model.training
    assert (point.step, point.responses_generated, point.num_problems) == (3, 96, 6)
    assert 0.0 <= point.accuracy <= 1.0
    plot_training_curve(tmp_path / "curve.png", callback.history,
                        [{"step": 1, "rewards/outcome_accuracy/mean": 0.5}], "test")
    assert (tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.slow
def test_cli_trains_and_reports(tmp_path, capsys):
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps({"prompt": p.prompt, "answer": p.answer}) + "\n" for p in toy.test_problems(8)))
    recipe = write_cli_recipe(tmp_path, heldout=str(heldout), heldout_size=8)
    assert dispatch("prime-rl", ["train", "--config", str(recipe)]) == 0
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and [p["step"] for p in summary["heldout"]] == [0, 2]
    assert (run / "training_curve.png").is_file() and (run / "prm" / "model.safetensors").is_file()
    assert (run / "model.safetensors").is_file()
    out = capsys.readouterr().out
    assert "held-out accuracy, end (step 2)" in out
    assert "step 2/2 | acc" in out and "'loss'" not in out
    logged = json.loads((run / "trainer_state.json").read_text())["log_history"]
    assert {"loss", "reward", "prm/accuracy", "prm/pairwise_accuracy"} <= set(logged[0])
