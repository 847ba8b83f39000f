"""Math and code rows in one PRIME run: the data path routes rows by their task column, and
PrimeTrainer steps on canned completions give the outcome each verifier should give — code rows
run in the sandbox, bad rows score 0 with a counted warning, and the step completes."""

from __future__ import annotations

import json
import logging
import os
import string

import pytest
import torch
from datasets import Dataset
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from primekit.errors import InputError
from primekit.rl.data import load_prompt_dataset
from primekit.rl.verifier import OutcomeVerifier, code_accuracy, outcome_accuracy
from primekit.verifiers.code import SandboxSettings, SandboxUnavailable, check_sandbox

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL flags rollout_func as experimental
# Generous limits: these tests check routing and scores, not timeouts (the hostile suite does), and a
# loaded 2-core machine must not turn a right program into a timed-out one.
FAST = SandboxSettings(test_timeout=3.0, program_timeout=6.0)


@pytest.fixture(scope="module", autouse=True)
def sandbox():
    try:
        check_sandbox(FAST)
    except SandboxUnavailable as error:
        pytest.skip(str(error))


def fence(code: str) -> str:
    return f"Here it is.\n```python\n{code}```"


DOUBLE = json.dumps({"inputs": ["2\n", "5\n"], "outputs": ["4\n", "10\n"]})
ADD = json.dumps({"inputs": ["1\n2", "3\n4"], "outputs": ["3", "7"], "fn_name": "add_up"})
ROWS = [  # prompt, task, answer, four canned responses, the outcome each must get
    ("Compute 10+20\n", "math", "30", ["\\boxed{30}", "\\boxed{31}", "\\boxed{30}", "\\boxed{31}"], [1, 0, 1, 0]),
    ("Double it.\n", "code", DOUBLE,
     [fence("print(int(input()) * 2)\n"), fence("print(int(input()) + 2)\n"),  # right only on "2"
      fence("import sys\nsys.exit(0)\n"), fence("n = int(input())\nprint(n + n)\n")], [1, 0, 0, 1]),
    ("Add them.\n", "code", ADD,
     [fence("def add_up(a, b):\n    return a + b\n"), fence("def plus(a, b):\n    return a + b\n"),  # no add_up()
      "", fence("while True:\n    pass\n")], [1, 0, 0, 0]),
    ("Broken tests.\n", "code", "{not json", [fence("print(1)\n")] * 4, [0, 0, 0, 0]),
]


@pytest.mark.slow
def test_router_scores_each_kind_with_its_verifier(caplog):
    verifier = OutcomeVerifier(code_settings=FAST, code_workers=2)
    completions, answers, tasks, expected = [], [], [], []
    for _, task, answer, responses, outcomes in ROWS:
        completions += responses
        answers += [answer] * 4
        tasks += [task] * 4
        expected += outcomes
    metrics = {}
    with caplog.at_level(logging.WARNING, logger="primekit.rl.verifier"):
        scores = verifier(completions, answer=answers, task=tasks, log_metric=metrics.__setitem__)
    assert scores == expected
    assert verifier.bad_rows == {"program lacks the fn_name target": 1, "empty response or empty code block": 1,
                                 "unreadable test cases": 4}
    assert metrics == {"verifier/math_accuracy": 0.5, "verifier/code_accuracy": 3 / 12, "verifier/bad_rows": 6.0}
    assert any("unreadable test cases" in r.getMessage() for r in caplog.records)
    # the official partial credit: the share of the first 10 tests that pass
    prime = OutcomeVerifier(code_settings=FAST, code_reward="prime")
    assert prime([ROWS[1][3][1]], answer=[DOUBLE], task=["code"]) == [0.5]


@pytest.mark.slow
def test_router_scores_are_the_same_in_every_round_with_tight_limits():
    """The same batch, verified again and again by one pool with the all-or-nothing reward (which
    skips a program's tests after its first failure): a right program passes whatever its sandbox
    ran before (an early exit, a loop, a wrong answer, a missing function)."""
    verifier = OutcomeVerifier(code_settings=SandboxSettings(test_timeout=1.0, program_timeout=4.0), code_workers=2)
    code_rows = [row for row in ROWS if row[1] == "code"]
    completions = [response for row in code_rows for response in row[3]]
    answers = [row[2] for row in code_rows for _ in row[3]]
    expected = [outcome for row in code_rows for outcome in row[4]]
    for round_ in range(4):
        scores = verifier(completions, answer=answers, task=["code"] * len(completions))
        assert scores == expected, (round_, [i for i, (a, b) in enumerate(zip(scores, expected)) if a != b])


def test_code_accuracy_reads_the_test_cases_column():
    right, wrong = fence("print(int(input()) * 2)\n"), fence("print(0)\n")
    assert code_accuracy([right, wrong], test_cases=[DOUBLE, json.loads(DOUBLE)]) == [1.0, 0.0]
    # conversational completions: the last message is the reply
    assert outcome_accuracy([[{"role": "assistant", "content": right}]], answer=[DOUBLE], task=["code"]) == [1.0]


def test_data_path_routes_rows_by_ability(tmp_path, caplog):
    rows = [{"prompt": [{"role": "user", "content": "1+1?"}], "ability": "math",
             "reward_model": {"ground_truth": "2"}},
            {"prompt": [{"role": "user", "content": "Double it."}], "ability": "code",
             "reward_model": {"ground_truth": json.loads(DOUBLE)}},
            {"prompt": [{"role": "user", "content": "Raw Eurus naming"}], "task": "Coding", "reward_model": {"ground_truth": DOUBLE}}]
    path = tmp_path / "eurus.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with caplog.at_level(logging.WARNING, logger="primekit.rl.data"):
        data = load_prompt_dataset(str(path), answer_field="reward_model.ground_truth")
    assert data["task"] == ["math", "code", "code"]
    assert data["answer"][0] == "2" and json.loads(data["answer"][1]) == json.loads(DOUBLE)
    assert any("3 prompts (math 1, code 2)" in r.getMessage() for r in caplog.records)
    path.write_text(json.dumps({"prompt": "x", "ability": "chemistry", "answer": "1"}) + "\n")
    with pytest.raises(InputError, match=r"eurus.jsonl:1: field 'ability': unknown task 'chemistry'"):
        load_prompt_dataset(str(path))


# ------------------------------------------------------------------------------------------------
# PrimeTrainer on the mixed rows


def char_policy(folder) -> str:
    """A tiny Qwen2 with a character-level tokenizer, so that canned Python code round-trips."""
    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    chars = sorted(set(string.printable) - set("\r\x0b\x0c"))
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(specials + chars)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<bos>", eos_token="<eos>", padding_side="left",
                                        clean_up_tokenization_spaces=False)
    tokenizer.chat_template = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(specials) + len(chars), hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, intermediate_size=64,
                                         max_position_embeddings=256, tie_word_embeddings=True, pad_token_id=0,
                                         bos_token_id=2, eos_token_id=3))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    text = ROWS[2][3][0]
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    return str(folder)


def canned_rollout(responses: dict[str, list[str]], group_size: int):
    def rollout(prompts, trainer):
        tokenizer = trainer.processing_class
        prompt_ids, completion_ids = [], []
        for row, prompt in enumerate(prompts):
            text = responses[prompt][row % group_size]
            prompt_ids.append(tokenizer.encode(prompt, add_special_tokens=False))
            completion_ids.append(tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


@pytest.mark.slow
def test_prime_trainer_steps_on_mixed_math_and_code_rows(tmp_path):
    from primekit.models import load_tokenizer
    from primekit.rl.config import PrimeConfig
    from primekit.rl.trainer import PrimeTrainer

    policy = char_policy(tmp_path / "policy")
    dataset = Dataset.from_list([{"prompt": p, "answer": a, "task": t} for p, t, a, _, _ in ROWS])
    config = PrimeConfig(output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False, gradient_checkpointing=False,
                         per_device_train_batch_size=16, num_generations=4, oversample_factor=1,
                         max_completion_length=64, learning_rate=1e-4, prm_learning_rate=1e-3, max_steps=1,
                         logging_steps=1, report_to="none", save_strategy="no", shuffle_dataset=False, seed=0,
                         disable_tqdm=True)
    verifier = OutcomeVerifier(code_settings=FAST, code_workers=2)
    trainer = PrimeTrainer(model=policy, args=config, train_dataset=dataset, processing_class=load_tokenizer(policy),
                           reward_funcs=verifier,
                           rollout_func=canned_rollout({p: r for p, _, _, r, _ in ROWS}, config.num_generations))
    trainer.train()
    expected = [outcome for *_, outcomes in ROWS for outcome in outcomes]
    assert trainer._outcome_rewards.tolist() == expected
    assert trainer.state.global_step == 1
    logged = {key: value for entry in trainer.state.log_history for key, value in entry.items()}
    assert logged["verifier/math_accuracy"] == 0.5 and logged["verifier/code_accuracy"] == 0.25
    assert logged["verifier/bad_rows"] == 6.0


def test_held_out_code_rows_are_graded_by_the_code_verifier(monkeypatch):
    from primekit.eval.generate import Completion
    from primekit.rl import heldout

    canned = {"Compute 10+20\n": "\\boxed{30}", "Double it.\n": fence("print(int(input()) * 2)\n")}
    class Canned:
        def __init__(self, *args, **kwargs):
            pass

        def generate(self, prompts, spec):
            return [[Completion(canned[p], True, 5)] for p in prompts]

    monkeypatch.setattr(heldout, "TransformersGenerator", Canned)
    callback = heldout.HeldOutAccuracy(list(canned), ["30", DOUBLE], tokenizer=None, tasks=["math", "code"],
                                       temperature=1.0, max_new_tokens=8, responses_per_step=1)
    assert callback.evaluate(torch.nn.Linear(1, 1), step=0).accuracy == 1.0  # both right
    callback.tasks = None  # without the task column the code row is read as math: its "answer" is JSON
    assert callback.evaluate(torch.nn.Linear(1, 1), step=0).accuracy == 0.5
