"""Config parsing (YAML + overrides) and the JSONL / atomic-write helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from primekit.cli import dispatch
from primekit.config import parse_config
from primekit.errors import InputError
from primekit.io import ResumableJsonl, atomic_write_json, iter_jsonl, require_field


@dataclass
class Options:
    beta: float = field(default=0.05, metadata={"help": "reward scale"})
    name: str = field(default="toy", metadata={"help": "model"})

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def parse(argv):
    return parse_config([Options], argv, prog="t", description="d")[0]


def test_yaml_sets_defaults_and_the_command_line_wins(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("beta: 0.1\nname: qwen\n")
    assert parse(["--config", str(recipe)]) == Options(beta=0.1, name="qwen")
    assert parse(["--config", str(recipe), "--beta", "0.2"]) == Options(beta=0.2, name="qwen")


def test_unknown_yaml_key_names_file_and_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("beta: 0.1\n\nbetta: 3\n")
    with pytest.raises(InputError) as err:
        parse(["--config", str(recipe)])
    assert str(err.value) == f"{recipe}:3: unknown option 'betta' (see --help for the options)"


def test_bad_values_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match=r"unknown option\(s\): --nope 1"):
        parse(["--nope", "1"])
    with pytest.raises(InputError, match="beta must be > 0"):
        parse(["--beta", "-1"])
    with pytest.raises(InputError, match="invalid float value"):
        parse(["--beta", "abc"])
    with pytest.raises(InputError, match="config file not found"):
        parse(["--config", str(tmp_path / "missing.yaml")])
    (tmp_path / "bad.yaml").write_text("beta: [1\n")
    with pytest.raises(InputError, match="invalid YAML"):
        parse(["--config", str(tmp_path / "bad.yaml")])


def test_jsonl_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(InputError) as err:
        list(iter_jsonl(path))
    assert str(err.value).startswith(f"{path}:3: malformed JSON")
    path.write_text('{"a": 1}\n[1]\n')
    with pytest.raises(InputError, match=r":2: expected a JSON object"):
        list(iter_jsonl(path))
    with pytest.raises(InputError) as err:
        require_field({"a": 1}, "b", path=path, line=4)
    assert str(err.value) == f"{path}:4: field 'b': missing"
    with pytest.raises(InputError, match="field 'a': expected str, got int"):
        require_field({"a": 1}, "a", path=path, line=4, kind=str)


def test_resumable_jsonl_keeps_records_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "out.jsonl"
    results = ResumableJsonl(path, key=lambda r: r["id"])
    results.append({"id": "a", "v": 1})
    results.append({"id": "b", "v": 2})
    with path.open("a") as handle:
        handle.write('{"id": "c", "v"')  # killed mid-write
    reopened = ResumableJsonl(path, key=lambda r: r["id"])
    assert reopened.done == {"a", "b"}
    reopened.append({"id": "c", "v": 3})
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "s.json", {"x": 1})
    assert json.loads((tmp_path / "s.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_cli_usage_and_unknown_command(capsys):
    assert dispatch("prime-prm", []) == 0
    assert "train" in capsys.readouterr().out
    assert dispatch("prime-prm", ["fly"]) == 2
    assert capsys.readouterr().err.strip() == (
        "prime-prm: error: unknown command 'fly' (choose from train, score, convert)")


def test_atomic_writes_use_shareable_permissions(tmp_path):
    import os
    from primekit.io import atomic_write_bytes

    atomic_write_bytes(tmp_path / "chart.png", b"\x89PNG")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "chart.png").read_bytes() == b"\x89PNG"
    assert (tmp_path / "chart.png").stat().st_mode & 0o777 == 0o666 & ~umask


@dataclass
class Renamed:
    deprecated_aliases = {"bootstrap": "bootstrap_resamples"}

    bootstrap_resamples: int = field(default=1000, metadata={"help": "resamples"})
    learning_rate: float = field(default=1e-3, metadata={"help": "lr"})

    def __post_init__(self):
        if self.bootstrap_resamples < 1:
            raise ValueError(f"bootstrap_resamples must be >= 1, got {self.bootstrap_resamples}")


def parse_renamed(argv):
    return parse_config([Renamed], argv, prog="t", description="d")[0]


def test_old_option_names_still_work_with_a_warning(tmp_path, capsys):
    assert parse_renamed(["--bootstrap", "50"]).bootstrap_resamples == 50
    assert "'--bootstrap' (command-line option) is deprecated" in capsys.readouterr().err
    assert parse_renamed(["--bootstrap=60"]).bootstrap_resamples == 60
    recipe = tmp_path / "r.yaml"
    recipe.write_text("bootstrap: 70\n")
    assert parse_renamed(["--config", str(recipe)]).bootstrap_resamples == 70
    assert f"'bootstrap' (key in {recipe}) is deprecated" in capsys.readouterr().err


def test_errors_name_where_the_bad_value_came_from(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 0.1\n\nbootstrap_resamples: 0\n")
    with pytest.raises(InputError) as err:  # from the recipe: its file and line
        parse_renamed(["--config", str(recipe)])
    assert str(err.value) == f"{recipe}:3: bootstrap_resamples must be >= 1, got 0"
    with pytest.raises(InputError) as err:  # from the command line, although the recipe has it
        parse_renamed(["--config", str(recipe), "--bootstrap_resamples", "-2"])
    assert str(err.value) == ("command-line option --bootstrap_resamples: bootstrap_resamples "
                              "must be >= 1, got -2")
    with pytest.raises(InputError) as err:
        parse_renamed(["--learning_rate", "-1e-4"])
    assert str(err.value) == "command-line option --learning_rate: learning_rate must be >= 0, got -0.0001"
    recipe.write_text("learning_rate: -0.5\n")
    with pytest.raises(InputError, match=rf"^{recipe}:1: learning_rate must be >= 0"):
        parse_renamed(["--config", str(recipe)])


def test_negative_learning_rate_of_a_real_command_is_one_line(capsys):
    assert dispatch("prime-rl", ["train", "--learning_rate", "-1e-5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "learning_rate must be >= 0" in err and "command-line" in err


def test_non_utf8_files_are_one_line_errors(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"a": "ok"}\n{"a": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(InputError) as err:
        list(iter_jsonl(path))
    assert str(err.value) == (f"{path}:2: not UTF-8 text (byte 0xe9 at column 11); re-save the "
                              "file as UTF-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"beta: 0.1\nname: caf\xe9\n")
    with pytest.raises(InputError, match=rf"^{recipe}:2: not UTF-8 text"):
        parse(["--config", str(recipe)])
