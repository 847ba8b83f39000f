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
NO_COUNTERPART = "no official counterpart"


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
    """Rows of keys the recipe sets hold its value; the other rows (defaults and derived settings) are
    checked against the configuration the trainer builds (the drift test below)."""
    table = header_table(EURUS_2_7B_PRIME)
    recipe = yaml.safe_load(EURUS_2_7B_PRIME.read_text(encoding="utf-8"))
    assert len(table) >= 100
    assert sum(key in recipe for key in table) >= 50
    for key, row in table.items():
        if key in recipe:
            assert recipe[key] == yaml.safe_load(row["value"]), f"{key}: recipe {recipe[key]!r} != table {row['value']}"
        assert row["source"], f"{key}: no source"
    unlisted = set(recipe) - set(table) - no_effect_keys(EURUS_2_7B_PRIME)
    assert not unlisted, f"set by the recipe but in neither the table nor the no-effect list: {sorted(unlisted)}"


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
        if row["source"] == NO_COUNTERPART:
            assert row["official"].startswith(NO_COUNTERPART + ": "), f"{key}: say why there is no counterpart"
            continue
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


# ----------------------------------------------------------------------------------------------
# drift: the configuration the trainer really builds, against the recipe's reviewed table

# Qwen2.5-Math-7B's config.json (the architecture of Eurus-2-7B-SFT): sizes for the meta-device models
QWEN25_MATH_7B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
                  "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                  "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 4096,
                  "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "dtype": "bfloat16"}
OFFLOAD_8GPU = REPO_ROOT / "recipes" / "accelerate" / "fsdp2_offload_8gpu.yaml"
PATHS_GIVEN_HERE = {"model", "prm", "prm_ref"}


def no_effect_keys(path: Path) -> set[str]:
    """The keys of the recipe's reviewed ``# No effect on the numbers`` list: after its explanation, the
    comma-separated ``#   key, key`` lines."""
    keys, inside = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# No effect on the numbers"):
            inside = True
        elif inside and line.startswith("#   "):
            keys.update(key.strip() for key in line[4:].split(",") if key.strip())
        elif inside and keys:
            break
    return keys


@pytest.fixture(scope="module")
def effective_7b(tmp_path_factory) -> dict:
    """The 7B recipe's configuration as `prime-rl config` resolves it on 8 GPUs with FSDP2 + offload."""
    import json

    from primekit.rl.commands import config_from_args

    folder = tmp_path_factory.mktemp("qwen2.5-math-7b")
    (folder / "config.json").write_text(json.dumps(QWEN25_MATH_7B))
    values, _, _ = config_from_args(["--config", str(EURUS_2_7B_PRIME), "--accelerate_config", str(OFFLOAD_8GPU),
                                     "--model", str(folder), "--prm", str(folder), "--prm_ref", str(folder),
                                     "--gpus", "8", "--format", "json"])
    return values


def _same(effective, listed: str) -> bool:
    expected = yaml.safe_load(listed)
    if isinstance(effective, float) or isinstance(expected, float):
        return expected is not None and effective is not None and abs(float(effective) - float(expected)) <= 1e-12 * max(1, abs(float(expected)))
    return effective == expected


def test_every_setting_that_changes_the_numbers_is_reviewed(effective_7b):
    """A field of the effective configuration is either a row of the reviewed table (and has its
    value there) or in the reviewed no-effect list; a new TRL default fails here, not in a run."""
    table = header_table(EURUS_2_7B_PRIME)
    quiet = no_effect_keys(EURUS_2_7B_PRIME)
    assert len(quiet) >= 50
    unreviewed, drifted = [], []
    for key, value in effective_7b.items():
        name = key.removeprefix("trl.").removeprefix("run.")
        if name in PATHS_GIVEN_HERE:
            continue  # the local config.json folder; the recipe's value is checked against the table above
        if name in table:
            if not _same(value, table[name]["value"]):
                drifted.append(f"{name}: runs with {value!r}, the table says {table[name]['value']}")
        elif name not in quiet:
            unreviewed.append(name)
    assert not drifted, "; ".join(drifted)
    assert not unreviewed, f"not reviewed (add to the recipe's table or its no-effect list): {', '.join(unreviewed)}"
    stale = (set(table) | quiet) - {key.removeprefix("trl.").removeprefix("run.") for key in effective_7b}
    assert not stale, f"reviewed but not in the configuration: {sorted(stale)}"


def test_the_7b_run_executes_as_the_official_one(effective_7b):
    values = effective_7b
    assert values["trl.vllm_importance_sampling_correction"] is False
    assert (values["fsdp.param_dtype"], values["fsdp.reduce_dtype"]) == ("bfloat16", "float32")
    assert values["fsdp.reduce_dtype_of_accelerate_alone"] == "bfloat16"  # what accelerate alone would do
    assert values["policy.gradients_sharded_during_accumulation"] is True
    assert values["prm.gradients_sharded_during_accumulation"] is True
    assert values["policy.weight_decay_parameters"] == "all"
    assert [group["weight_decay"] for group in values["policy.optimizer"]["groups"]] == [0.01]
    assert values["policy.optimizer"]["groups"][0]["parameters"] == values["policy.parameters"] == 7_615_616_512
    assert values["schedule.optimizer_steps_per_rl_step"] == 4
    assert values["schedule.checkpoint_every_rl_steps"] == 16
    assert values["schedule.epoch"] == "official"
