"""Shared pieces of the RL trainer tests: a tiny saved policy, problems with two-digit answers, and
a scripted rollout whose responses (and so outcomes) are fixed in advance.

The scripted rollout plugs into TRL's ``rollout_func`` hook, so the trainer runs its real code path
(tokenised batch, verifier, gather, filter, PRM, advantages) on responses we choose. Each prompt
has a pattern such as ``"1000"``: response j of its group is right ("1"), wrong ("0", the answer
with its last digit changed, same length) or truncated ("t", a wrong answer without EOS). Every
response is ``\\boxed{dd}`` + EOS, i.e. 5 tokens, so hand-computed advantages are simple.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from datasets import Dataset

from primekit import toy
from primekit.models import load_tokenizer

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL flags rollout_func as experimental

RESPONSE_TOKENS = 5  # "\boxed{", two digits, "}", EOS


def save_tiny_policy(folder: Path) -> str:
    """An untrained tiny Qwen2 and the toy tokenizer, saved like any hub model."""
    toy.random_model(0).save_pretrained(folder)
    toy.build_tokenizer().save_pretrained(folder)
    return str(folder)


def problems(patterns: list[str], varied_lengths: bool = False) -> tuple[Dataset, dict[str, tuple[str, str]]]:
    """One problem per pattern (in order): the dataset and prompt -> (answer, pattern). With
    ``varied_lengths`` the prompts differ in length (``+0`` terms), so batches need left padding."""
    rows, lookup = [], {}
    for index, pattern in enumerate(patterns):
        a, b = 10 + index, 20 + 2 * index  # answers 30, 33, 36, ... : always two digits
        zeros = "+0" * (index % 3) if varied_lengths else ""
        prompt = f"Compute {a}+{b}{zeros}\n"
        rows.append({"prompt": prompt, "answer": str(a + b)})
        lookup[prompt] = (str(a + b), pattern)
    return Dataset.from_list(rows), lookup


def _wrong(answer: str) -> str:
    return answer[:-1] + str((int(answer[-1]) + 1) % 10)


def scripted_rollout(lookup: dict[str, tuple[str, str]], group_size: int):
    """A TRL ``rollout_func``: local prompts arrive group by group (n copies each)."""

    def rollout(prompts: list[str], trainer: Any) -> dict[str, Any]:
        tokenizer = trainer.processing_class
        prompt_ids, completion_ids = [], []
        for row, prompt in enumerate(prompts):
            answer, pattern = lookup[prompt]
            kind = pattern[row % group_size]
            text = f"\\boxed{{{answer if kind == '1' else _wrong(answer)}}}"
            ids = tokenizer.encode(text, add_special_tokens=False)
            prompt_ids.append(tokenizer.encode(prompt, add_special_tokens=False))
            completion_ids.append(ids if kind == "t" else ids + [tokenizer.eos_token_id])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


def build_trainer(model_dir: str, patterns: list[str], output_dir: Path, callbacks=None,
                  varied_lengths: bool = False, **overrides: Any):
    """A PrimeTrainer on ``patterns`` with the scripted rollout; one group per pattern, in order."""
    from primekit.rl.config import PrimeConfig
    from primekit.rl.trainer import PrimeTrainer

    dataset, lookup = problems(patterns, varied_lengths)
    settings = dict(output_dir=str(output_dir), use_cpu=True, bf16=False, gradient_checkpointing=False,
                    per_device_train_batch_size=8, num_generations=4, oversample_factor=1,
                    max_completion_length=8, learning_rate=1e-4, prm_learning_rate=1e-3, max_steps=1,
                    logging_steps=1, report_to="none", save_strategy="no", shuffle_dataset=False, seed=0,
                    disable_tqdm=True)
    settings.update(overrides)
    config = PrimeConfig(**settings)
    return PrimeTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=load_tokenizer(model_dir),
                        rollout_func=scripted_rollout(lookup, config.num_generations), callbacks=callbacks)


def first_batch(trainer) -> dict[str, Any]:
    """PRIME's output for the first generation batch (what the policy loss receives)."""
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._generate_and_score_completions(batch)


def write_cli_recipe(folder: Path, **overrides: Any) -> Path:
    """A `prime-rl train` recipe on the tiny policy and 64 toy problems in a JSONL file."""
    problems = folder / "problems.jsonl"
    problems.write_text("".join(json.dumps({"prompt": p.prompt, "answer": p.answer}) + "\n"
                                for p in toy.make_problems(64, seed=5)))
    recipe = {"model": save_tiny_policy(folder / "policy"), "dataset": str(problems), "heldout": "none",
              "output_dir": str(folder / "run"), "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
              "per_device_train_batch_size": 8, "num_generations": 4, "oversample_factor": 1,
              "max_completion_length": 8, "learning_rate": 1e-4, "prm_learning_rate": 1e-3, "max_steps": 2,
              "save_strategy": "no", "logging_steps": 1, "report_to": "none", "seed": 0, "disable_tqdm": True,
              **overrides}
    if recipe.get("save_steps"):
        recipe["save_strategy"] = "steps"
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path
