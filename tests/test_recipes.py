"""The shipped recipes against the official settings they cite: every row of a recipe's header table
(key, value, official setting, source) must be what the recipe's YAML sets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from primekit.paths import REPO_ROOT

EURUS_2_7B_PRIME = REPO_ROOT / "recipes" / "eurus_2_7b_prime.yaml"
OFFICIAL_GPUS = 8  # trainer.n_gpus_per_node=8 (run_prime_main.sh:42)


def header_table(path: Path) -> dict[str, dict[str, str]]:
    """The ``# | key | value | official setting | source |`` rows of a recipe's header, by key."""
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# |") or line.startswith(("# | key", "# |---")):
            continue
        cells = [cell.strip() for cell in line[2:].strip().strip("|").split(" | ")]
        assert len(cells) == 4, f"{path.name}: malformed table row: {line}"
        key, value, official, source = cells
        assert key not in rows, f"{path.name}: {key} is listed twice"
        rows[key] = {"value": value, "official": official, "source": source}
    return rows


def test_every_row_of_the_official_table_is_what_the_recipe_sets():
    table = header_table(EURUS_2_7B_PRIME)
    recipe = yaml.safe_load(EURUS_2_7B_PRIME.read_text(encoding="utf-8"))
    assert len(table) >= 40
    for key, row in table.items():
        assert key in recipe, f"{key} is in the table but not set by the recipe"
        assert recipe[key] == yaml.safe_load(row["value"]), f"{key}: recipe {recipe[key]!r} != table {row['value']}"
        assert row["source"], f"{key}: no source"


def test_the_recipe_reproduces_the_official_batch_geometry():
    recipe = yaml.safe_load(EURUS_2_7B_PRIME.read_text(encoding="utf-8"))
    per_update = recipe["per_device_train_batch_size"] * recipe["gradient_accumulation_steps"] * OFFICIAL_GPUS
    rollout = recipe["per_device_train_batch_size"] * recipe["steps_per_generation"] * OFFICIAL_GPUS
    assert per_update == 256  # actor.ppo_mini_batch_size=256 (run_prime_main.sh:24)
    assert rollout == 256 * recipe["num_generations"] == 1024  # data.train_batch_size=256 x n_samples=4
    assert rollout // per_update == 4  # four policy updates per rollout, so PPO's clip acts
    assert rollout // recipe["prm_mini_batch_size"] == 4  # four PRM optimizer steps per RL step


def test_the_recipe_parses_as_prime_rl_options():
    from primekit.rl.commands import parse_train_args

    # one CPU process trains 1/8 of the official batch, so its PRM mini-batch is 1/8 too
    run, config = parse_train_args(["--config", str(EURUS_2_7B_PRIME), "--use_cpu", "true",
                                    "--prm_mini_batch_size", "32"])
    assert (run.model, config.prm_update, config.loss_type, config.max_prompt_length) == \
        ("PRIME-RL/Eurus-2-7B-SFT", "after", "grpo", 1024)
    assert config.steps_per_generation // config.gradient_accumulation_steps == 4
    assert config.trained_batch_size // config.prm_mini_batch_size == 4
