"""The shipped recipes against the official settings they cite: every row of a recipe's header table
(key, value, official setting, source) must be what the recipe's YAML sets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from primekit.eval.protocols import PRIME_COMMIT
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


PRIME_FILES = {"run": "training/examples/run_prime_main.sh", "yaml": "training/verl/trainer/config/ppo_trainer.yaml",
               "workers": "training/verl/workers/fsdp_workers.py",
               "ray_trainer.py": "training/verl/trainer/ppo/ray_trainer.py",
               "core_algos.py": "training/verl/trainer/ppo/core_algos.py",
               "dp_actor.py": "training/verl/workers/actor/dp_actor.py",
               "dp_prime.py": "training/verl/workers/actor/dp_prime.py",
               "prime.py": "training/verl/utils/reward_score/prime.py",
               "rl_dataset.py": "training/verl/utils/dataset/rl_dataset.py",
               "main_ppo.py": "training/verl/trainer/main_ppo.py"}
# an official setting written as `dotted.key=value` (a run_prime_main.sh override) or `dotted.key: value` (a
# ppo_trainer.yaml entry, found under its last key)
SETTING = re.compile(r"^([\w.]+)(=|: )([^\s,(]+)")


def cited_lines(source: str) -> list[tuple[str, str]]:
    """(file, its cited lines) for each ``file:1,2-4`` reference of a source cell; a bare number after a
    comma continues the previous file."""
    from upstream import require_upstream_file

    cited, current = [], None
    for part in re.split(r",\s*", source):
        named = re.fullmatch(r"([\w.]+):([\d-]+)", part)
        if named:
            current, lines = named.groups()
        elif current and re.fullmatch(r"[\d-]+", part):
            lines = part
        else:
            continue
        text = require_upstream_file("PRIME-RL/PRIME", PRIME_FILES[current], PRIME_COMMIT).splitlines()
        first, _, last = lines.partition("-")
        cited.append((current, "\n".join(text[int(first) - 1:int(last or first)])))
    return cited


def test_each_cited_line_of_the_official_table_says_the_setting():
    """Every row cites PRIME lines (read at the pinned commit); where the official setting is a run
    override or a config entry, the cited lines hold it as written."""
    checked = 0
    for key, row in header_table(EURUS_2_7B_PRIME).items():
        cited = cited_lines(row["source"])
        assert cited, f"{key}: no file:line in {row['source']!r}"
        setting = SETTING.match(row["official"])
        if setting is None:
            continue
        name, separator, value = setting.groups()
        wanted = f"{name}={value}" if separator == "=" else f"{name.rsplit('.', 1)[-1]}: {value}"
        assert any(wanted in lines for _, lines in cited), f"{key}: {row['source']} does not say {wanted!r}"
        checked += 1
    assert checked >= 20
