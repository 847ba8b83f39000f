"""`prime-prm train` / `prime-prm score` end to end on tiny local models, resume, and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from primekit import toy
from primekit.cli import dispatch
from primekit.config import parse_config
from primekit.prm.config import ImplicitPRMConfig, PRMModelConfig

TRAIN_RECORDS = [{"prompt": f"Compute {i}\n", "completion": f"\\boxed{{{i if i % 2 == 0 else i + 1}}}",
                  "label": int(i % 2 == 0)} for i in range(24)]
FAST = ["--use_cpu", "true", "--disable_tqdm", "true", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "8", "--logging_steps", "1", "--max_length", "32",
        "--eval_strategy", "no"]
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random tiny Qwen2 with the toy tokenizer, saved like any local model."""
    path = tmp_path_factory.mktemp("tiny-model")
    toy.random_model(0).save_pretrained(path)
    toy.build_tokenizer().save_pretrained(path)
    return path


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def run(capsys, *argv):
    code = dispatch("prime-prm", list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_train_then_score_end_to_end(tmp_path, tiny_model, capsys):
    train_file = write_jsonl(tmp_path / "train.jsonl", TRAIN_RECORDS)
    out_dir = tmp_path / "prm"
    code, out, _ = run(capsys, "train", "--model", str(tiny_model), "--train_file",
                       str(train_file), "--eval_fraction", "0.25", "--output_dir", str(out_dir),
                       "--max_steps", "6", "--learning_rate", "3e-3", "--prm_beta", "0.5", *FAST)
    assert code == 0
    assert "eval AUC" in out and "output dir" in out
    record = json.loads((out_dir / "implicit_prm.json").read_text())
    assert record == {"base": str(tiny_model), "reference": str(tiny_model), "beta": 0.5, "coef": 0.5,
                      "step_mode": "auto", "append_eos": True, "read_out": "steps"}

    inputs = [{"id": i, "prompt": r["prompt"], "response": r["completion"]} for i, r in enumerate(TRAIN_RECORDS[:5])]
    scored = tmp_path / "scored.jsonl"
    code, out, _ = run(capsys, "score", "--prm", str(out_dir), "--input",
                       str(write_jsonl(tmp_path / "in.jsonl", inputs)), "--out", str(scored), "--device", "cpu",
                       "--aggregate", "min_q,last")
    assert code == 0 and "scored 5 responses" in out and "coef 0.5" in out  # the recorded coef
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [row["id"] for row in rows] == list(range(5))  # input order, input fields kept
    for row in rows:
        # "\boxed{" + digits + "}" + EOS tokens; one step; rewards add up
        assert len(row["token_rewards"]) == len(row["response"]) - len("\\boxed{") + 1 + 1
        assert row["sequence_reward"] == pytest.approx(sum(row["token_rewards"]), abs=1e-4)
        assert row["step_rewards"] == [pytest.approx(row["sequence_reward"], abs=1e-4)]
        assert row["q_values"] == row["step_rewards"] and row["steps"] == [row["response"]]
        assert row["scores"] == {"min_q": pytest.approx(row["sequence_reward"], abs=1e-5),
                                 "last": pytest.approx(row["sequence_reward"], abs=1e-5)}
    assert not list(tmp_path.glob(".scored.jsonl*.partial"))


def test_score_resumes_from_partial_results(tmp_path, tiny_model, capsys):
    inputs = [{"prompt": "Compute 1+2\n", "response": "1+2=3\n\\boxed{3}"},
              {"prompt": "Compute 4\n", "response": "\\boxed{4}"}]
    input_path = write_jsonl(tmp_path / "in.jsonl", inputs)
    # A first run that was killed after line 2 (its key: line number + hash of prompt and response).
    from primekit.prm.commands import _read_score_input, partial_path
    from primekit.arguments import PRMReadingArguments
    from primekit.prm.settings import resolve_reading

    key = _read_score_input(str(input_path))[1][0]
    settings = resolve_reading(PRMReadingArguments(prm=str(tiny_model), prm_ref=str(tiny_model)))
    write_jsonl(partial_path(tmp_path / "out.jsonl", settings),
                [{"key": key, "token_rewards": [9.0], "step_rewards": [9.0], "sequence_reward": 9.0}])
    code, _, _ = run(capsys, "score", "--prm", str(tiny_model), "--prm_ref", str(tiny_model), "--input",
                     str(input_path), "--out", str(tmp_path / "out.jsonl"), "--device", "cpu")
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows[1]["sequence_reward"] == 9.0  # kept, not recomputed
    assert rows[0]["sequence_reward"] == 0.0  # computed: the PRM is its own reference
    assert rows[0]["step_rewards"] == [0.0, 0.0]
    # another reading setting does not reuse those results
    code, _, _ = run(capsys, "score", "--prm", str(tiny_model), "--prm_ref", str(tiny_model), "--input",
                     str(input_path), "--out", str(tmp_path / "out.jsonl"), "--device", "cpu", "--coef", "0.1")
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[1])["sequence_reward"] == 0.0


def test_train_resumes_from_checkpoint(tmp_path, tiny_model, capsys):
    train_file = write_jsonl(tmp_path / "train.jsonl", TRAIN_RECORDS)
    common = ["train", "--model", str(tiny_model), "--train_file", str(train_file),
              "--eval_fraction", "0", "--output_dir", str(tmp_path / "prm"), "--save_strategy", "steps",
              "--save_steps", "2", *FAST]
    code, out, _ = run(capsys, *common, "--max_steps", "4")
    assert code == 0 and (tmp_path / "prm" / "checkpoint-4").is_dir()
    # a checkpoint carries the reading record too: it reads with its path alone
    from primekit.prm.implicit import ImplicitPRM

    assert ImplicitPRM.from_pretrained(tmp_path / "prm" / "checkpoint-4", device="cpu").coef == 0.05
    assert out.count("'loss'") == 4
    code, out, _ = run(capsys, *common, "--max_steps", "6", "--resume_from_checkpoint", "true")
    assert code == 0
    assert out.count("'loss'") == 2  # steps 5 and 6 only: steps 1-4 came from checkpoint-4
    state = json.loads((tmp_path / "prm" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3, 4, 5, 6]


def test_train_bad_input_is_one_line(tmp_path, tiny_model, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [TRAIN_RECORDS[0], {**TRAIN_RECORDS[1], "label": "yes"}])
    base = ["train", "--model", str(tiny_model), "--output_dir", str(tmp_path / "o"), *FAST]
    assert_one_line_error(*run(capsys, *base, "--train_file", str(bad))[::2], "bad.jsonl:2", "'label'")
    broken = write_jsonl(tmp_path / "broken.jsonl", ['{"prompt": '])
    assert_one_line_error(*run(capsys, *base, "--train_file", str(broken))[::2], "broken.jsonl:1", "malformed")
    empty = write_jsonl(tmp_path / "empty.jsonl", [{**TRAIN_RECORDS[0], "completion": ""}])
    assert_one_line_error(*run(capsys, *base, "--train_file", str(empty))[::2], "empty.jsonl:1", "'completion'")
    assert_one_line_error(*run(capsys, *base, "--train_file", str(bad), "--loss_type", "hinge")[::2], "loss_type")
    assert_one_line_error(*run(capsys, *base)[::2], "train_file")  # not the toy model: data required
    assert_one_line_error(*run(capsys, "train", "--no_such_option", "1")[::2], "no_such_option")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("prm_beta: 0.05\nlearning_rat: 1e-6\n")
    assert_one_line_error(*run(capsys, "train", "--config", str(recipe))[::2], "recipe.yaml:2", "learning_rat")
    assert_one_line_error(*run(capsys, *base, "--train_file", str(bad), "--model",
                               str(tmp_path / "missing"))[::2], "missing")


def test_score_bad_input_is_one_line(tmp_path, tiny_model, capsys):
    good = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Compute 1\n", "response": "\\boxed{1}"}])
    no_response = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Compute 1\n", "answer": "1"}])
    out = str(tmp_path / "out.jsonl")
    assert_one_line_error(*run(capsys, "score", "--input", str(good), "--out", out)[::2], "--prm")
    assert_one_line_error(*run(capsys, "score", "--prm", str(tiny_model), "--input", str(no_response),
                               "--out", out)[::2], "bad.jsonl:1", "'response'")
    assert_one_line_error(*run(capsys, "score", "--prm", str(tiny_model), "--input", str(good),
                               "--out", out, "--device", "cpu")[::2], "reference")
    assert_one_line_error(*run(capsys, "score", "--prm", str(tiny_model), "--input", str(tmp_path / "nope.jsonl"),
                               "--out", out)[::2], "file not found")
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"prompt": "Compute 1\n", "response": " \n"}])
    assert_one_line_error(*run(capsys, "score", "--prm", str(tiny_model), "--input", str(empty),
                               "--out", out)[::2], "empty.jsonl:1", "'response'", "no text")
    base = ["score", "--prm", str(tiny_model), "--prm_ref", str(tiny_model), "--input", str(good), "--out", out]
    assert_one_line_error(*run(capsys, *base, "--coef", "0")[::2], "coef must be a positive number")
    assert_one_line_error(*run(capsys, *base, "--aggregate", "max")[::2], "unknown aggregate 'max'")
    assert_one_line_error(*run(capsys, *base, "--step_mode", "lines")[::2], "unknown step mode 'lines'")


def _source_table(path: Path) -> dict[str, str]:
    """The ``| setting | value | source |`` rows of a recipe's header."""
    rows = {}
    for line in path.read_text().splitlines():
        cells = [cell.strip() for cell in line.lstrip("# ").split("|")[1:-1]]
        if len(cells) == 3 and cells[0] not in ("setting", "---"):
            rows[cells[0]] = cells[1]
    return rows


def test_eurus_recipe_matches_its_source_table():
    recipe = RECIPES / "eurus_prm_stage1.yaml"
    table, settings = _source_table(recipe), yaml.safe_load(recipe.read_text())
    assert len(table) >= 20
    for name, value in table.items():
        assert name in settings, f"{name} is in the table but not set"
        assert settings[name] == yaml.safe_load(value), name
        assert re.search(r"[\w/.]+\.(sh|py):\d+|model card", line_of(recipe, name)), f"{name} has no source"
    # the published values, spelled out once more
    assert (table["prm_beta"], table["learning_rate"], table["adam_beta2"], table["max_length"]) == \
        ("0.05", "5.0e-7", "0.95", "8192")
    assert settings["per_device_train_batch_size"] * settings["gradient_accumulation_steps"] * 8 == 64  # 8 GPUs


IMPLICITPRM_COMMIT = "c04417559fdbd59738187c613c6c31821e964431"
IMPLICITPRM_FILES = {"run_ce.sh": "train/tasks/run_ce.sh", "train_ce.py": "train/openrlhf/cli/train_ce.py",
                     "ce_trainer.py": "train/openrlhf/trainer/ce_trainer.py",
                     "deepspeed.py": "train/openrlhf/utils/deepspeed.py",
                     "utils/utils.py": "train/openrlhf/utils/utils.py",
                     "datasets/ce_dataset.py": "train/openrlhf/datasets/ce_dataset.py",
                     "eval/prm_eval_utils.py": "eval/prm_eval_utils.py", "eval/processbench.py": "eval/processbench.py"}
# What the first cited line(s) of each row must say, in ImplicitPRM's own spelling.
EURUS_SOURCE_TEXT = {
    "ref_model_name_or_path": "args.ref_pretrain = args.pretrain", "loss_type": "openrlhf.cli.train_ce",
    "prm_beta": "beta=0.05", "learning_rate": "LR=5e-7", "num_train_epochs": "max_epochs=1",
    "per_device_train_batch_size": "--micro_train_batch_size 2", "gradient_accumulation_steps": "--train_batch_size 64",
    "max_length": "--max_len 8192", "lr_scheduler_type": '"cosine_with_min_lr"',
    "lr_scheduler_kwargs": "args.learning_rate * 0.1", "warmup_steps": "max_steps * 0.03",
    "adam_beta1": "default=(0.9, 0.95)", "adam_beta2": "default=(0.9, 0.95)", "weight_decay": '"--l2", type=float, default=0.0',
    "max_grad_norm": '"--max_norm", type=float, default=1.0', "bf16": "--bf16",
    "gradient_checkpointing": "--gradient_checkpointing", "eval_fraction": "len(train_data) * 0.03",
    "dataloader_drop_last": "drop_last=True", "append_eos": "eos_token", "seed": '"--seed", type=int, default=42',
    "step_mode": "re.split('Step \\d+:'", "coef": "coef in [0.001]"}


def test_eurus_recipe_sources_say_what_the_table_says():
    """Each sourced row cites ImplicitPRM lines (read at the pinned commit) that hold its setting."""
    from upstream import require_upstream_file

    recipe = RECIPES / "eurus_prm_stage1.yaml"
    for name, expected in EURUS_SOURCE_TEXT.items():
        source = line_of(recipe, name).split("|")[3]
        cited = []
        for short, first, last in re.findall(r"([\w/.]+\.(?:sh|py)):(\d+)(?:-(\d+))?", source):
            text = require_upstream_file("PRIME-RL/ImplicitPRM", IMPLICITPRM_FILES[short], IMPLICITPRM_COMMIT)
            cited.append("\n".join(text.splitlines()[int(first) - 1:int(last or first)]))
        assert cited, f"{name}: no file:line in {source!r}"
        assert any(expected in lines for lines in cited), f"{name}: {source!r} does not say {expected!r}"


def line_of(path: Path, setting: str) -> str:
    return next(line for line in path.read_text().splitlines() if line.startswith(f"# | {setting} |"))


def test_recipes_parse_with_the_published_settings():
    def parse(name, *overrides):
        return parse_config([ImplicitPRMConfig, PRMModelConfig], ["--config", str(RECIPES / name), *overrides],
                            prog="t", description="d")

    # bf16 is switched off here only because this machine has no GPU to check it against
    config, model_args, *_ = parse("eurus_prm_stage1.yaml", "--bf16", "false")
    assert (config.loss_type, config.prm_beta, config.learning_rate) == ("ce", 0.05, 5e-7)
    assert (config.adam_beta2, config.max_length, config.eval_fraction, config.coef) == (0.95, 8192, 0, 0.001)
    assert config.lr_scheduler_type == "cosine_with_min_lr" and config.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    assert model_args.model == config.ref_model_name_or_path == "Qwen/Qwen2.5-Math-7B-Instruct"
    assert model_args.model_name_or_path == model_args.model  # TRL's field, for TRL's helpers
    # the schedule the Trainer builds from it: warm-up over ceil(3%) of the steps, then cosine to 10%
    from transformers.optimization import get_scheduler

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=config.learning_rate)
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, num_warmup_steps=config.get_warmup_steps(100),
                              num_training_steps=100, scheduler_specific_kwargs=config.lr_scheduler_kwargs)
    rates = []
    for _ in range(100):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert config.get_warmup_steps(100) == 3 and rates[3] == pytest.approx(5e-7)
    assert rates[-1] == pytest.approx(5e-8, rel=0.01)  # floor: 0.1 x lr
    toy_config, toy_model, *_ = parse("toy_prm.yaml")
    defaults, default_model, *_ = parse_config([ImplicitPRMConfig, PRMModelConfig], [], prog="t", description="d")
    assert toy_model.model == "toy"
    for name in ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "prm_beta", "loss_type",
                 "toy_num_train_problems", "toy_samples_per_problem", "toy_num_eval_problems"):
        assert getattr(toy_config, name) == getattr(defaults, name), name  # the recipe is the default


def test_old_option_names_still_work_with_a_warning(tmp_path, capsys):
    """``--model_name_or_path`` and ``--beta`` (and their YAML keys) are the old names of ``--model``
    and ``--prm_beta``; TRL's ``model_name_or_path`` field follows ``--model``."""
    config, model_args, *_ = parse_config([ImplicitPRMConfig, PRMModelConfig],
                                      ["--model_name_or_path", "some/model", "--beta", "0.2"], prog="t", description="d")
    assert (model_args.model, model_args.model_name_or_path, config.prm_beta) == ("some/model", "some/model", 0.2)
    err = capsys.readouterr().err
    assert "'--model_name_or_path'" in err and "'--model'" in err and "'--prm_beta'" in err
    recipe = tmp_path / "old.yaml"
    recipe.write_text("model_name_or_path: toy\nbeta: 0.3\n")
    config, model_args, *_ = parse_config([ImplicitPRMConfig, PRMModelConfig], ["--config", str(recipe)],
                                      prog="t", description="d")
    assert (model_args.model, config.prm_beta) == ("toy", 0.3)
    assert "deprecated" in capsys.readouterr().err


@pytest.mark.slow
def test_toy_default_trains_on_the_toy_policy(tmp_path, capsys):
    """The no-argument default, shrunk: toy policy as init and reference, its graded samples."""
    code, out, _ = run(capsys, "train", "--output_dir", str(tmp_path / "prm"), "--toy_num_train_problems", "48",
                       "--toy_num_eval_problems", "16", "--max_steps", "3", "--disable_tqdm", "true")
    assert code == 0 and "eval AUC" in out
    record = json.loads((tmp_path / "prm" / "implicit_prm.json").read_text())
    assert record["reference"] == str(toy.policy_path())


def test_convert_eurus_stage1_data(tmp_path, capsys):
    rows = [{"response": [{"role": "user", "content": f"Compute {i}\n"},
                          {"role": "assistant", "content": f"\\boxed{{{i}}}"}],
             "label": i % 2 == 0, "instruction dataset": "toy", "generator model": "m"} for i in range(3)]
    source = write_jsonl(tmp_path / "stage1.jsonl", rows)
    out = tmp_path / "train.jsonl"
    code, printed, _ = run(capsys, "convert", str(source), "--format", "eurus-stage1", "--out", str(out))
    assert code == 0 and "converted 3 responses (2 correct, 1 incorrect)" in printed
    converted = [json.loads(line) for line in out.read_text().splitlines()]
    assert converted[1] == {"prompt": [{"role": "user", "content": "Compute 1\n"}], "completion": "\\boxed{1}",
                            "label": 0}
    # the converted file is prime-prm train's outcome format
    from primekit.prm.data import read_outcome_samples

    assert len(read_outcome_samples(out)) == 3
    # parquet, as the data is published
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "stage1.parquet")
    code, _, _ = run(capsys, "convert", str(tmp_path / "stage1.parquet"), "--out", str(tmp_path / "p.jsonl"),
                     "--limit", "2")
    assert code == 0 and len((tmp_path / "p.jsonl").read_text().splitlines()) == 2
    bad = [rows[0], {**rows[1], "response": rows[1]["response"][:1]}]
    pq.write_table(pa.Table.from_pylist(bad), tmp_path / "bad.parquet")
    assert_one_line_error(*run(capsys, "convert", str(tmp_path / "bad.parquet"), "--out", str(out))[::2],
                          "bad.parquet[1]", "'response'")
    assert_one_line_error(*run(capsys, "convert", str(write_jsonl(tmp_path / "b.jsonl", [rows[0], {"label": 1}])),
                               "--out", str(out))[::2], "b.jsonl:2", "'response'", "missing")
    assert_one_line_error(*run(capsys, "convert", str(source))[::2], "--out")
    assert_one_line_error(*run(capsys, "convert", str(source), "--out", str(out), "--format", "csv")[::2],
                          "unknown format")
