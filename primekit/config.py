"""YAML config + ``--key value`` overrides for every command, in TRL's style.

We use TRL's :class:`~trl.TrlParser` (``--config recipe.yaml`` sets defaults, the command line
overrides them) and only add what users need from a CLI: every mistake — an unknown key in the
YAML, a bad value, a failed ``__post_init__`` check — becomes one :class:`InputError` line that
names the file, line and key, instead of an argparse dump or a traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from primekit.errors import InputError
from primekit.io import read_text


def help_text(text: str) -> dict[str, str]:
    """Field metadata for a dataclass option: ``field(default=..., metadata=help_text("..."))``."""
    return {"help": text}


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest *complete* ``checkpoint-N`` folder (its trainer state is written last)."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    complete = [(int(match.group(1)), path) for path in folder.iterdir()
                if (match := _CHECKPOINT.match(path.name)) and (path / "trainer_state.json").is_file()]
    return max(complete)[1] if complete else None


def resume_checkpoint(value: str | bool | None, output_dir: str | Path) -> str | None:
    """What a ``resume_from_checkpoint`` value asks for, as the checkpoint folder to resume from:
    unset, ``false`` or ``no`` start afresh; ``true``, ``last`` or ``latest`` resume from the
    newest complete checkpoint in ``output_dir`` (afresh when there is none yet); anything else
    names a checkpoint folder, which must be complete."""
    if value is None or value is False or str(value).lower() in ("false", "no", ""):
        return None
    if value is True or str(value).lower() in ("true", "last", "latest"):
        found = latest_checkpoint(output_dir)
        return str(found) if found else None
    if not (Path(value) / "trainer_state.json").is_file():
        raise InputError("not a complete checkpoint folder (no trainer_state.json)", path=value,
                         field="resume_from_checkpoint")
    return str(value)


def leading_positionals(argv: Sequence[str], option: str) -> list[str]:
    """``FILE ... --x y`` -> ``option FILE ... --x y``: the bare words a command is given first are
    the values of its main option (``prime-eval grade out.jsonl`` = ``--input out.jsonl``)."""
    args = list(argv)
    count = next((i for i, arg in enumerate(args) if arg.startswith("-")), len(args))
    return [option, *args] if count else args


class _RaisingParser(TrlParser):
    """A TrlParser whose argparse errors raise :class:`InputError` instead of exiting."""

    def error(self, message: str):  # argparse API
        raise InputError(message)


def yaml_line_of(path: str, key: str) -> int | None:
    """The 1-based line of ``key:`` in a YAML file (for an error that names it), or None."""
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*:")
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def load_yaml(path: str, what: str = "config file") -> dict[str, Any]:
    """The YAML mapping in ``path`` (``what`` names the file in errors); one-line errors naming the line."""
    if not Path(path).is_file():
        raise InputError(f"{what} not found", path=path)
    try:
        config = yaml.safe_load(read_text(path)) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"invalid YAML ({getattr(err, 'problem', err)})", path=path,
                         line=None if mark is None else mark.line + 1) from None
    if not isinstance(config, dict):
        raise InputError("a config file must hold a YAML mapping of option: value", path=path)
    return config


def deprecated_aliases(dataclass_types: Sequence[type]) -> dict[str, str]:
    """Old option name -> current name, from each dataclass's ``deprecated_aliases`` attribute."""
    aliases: dict[str, str] = {}
    for dataclass_type in dataclass_types:
        aliases.update(getattr(dataclass_type, "deprecated_aliases", {}))
    return aliases


def _warn_deprecated(prog: str, old: str, new: str, where: str) -> None:
    print(f"{prog}: warning: '{old}' ({where}) is deprecated and will be removed in the next "
          f"release; use '{new}'", file=sys.stderr)


def _rename_cli_aliases(args: list[str], aliases: dict[str, str], prog: str) -> list[str]:
    """``--old value`` / ``--old=value`` (also with dashes) -> the current option name."""
    spellings = {f"--{old}": new for old, new in aliases.items()}
    spellings.update({f"--{old.replace('_', '-')}": new for old, new in aliases.items()})
    renamed = []
    for arg in args:
        option, equals, value = arg.partition("=")
        if option in spellings:
            _warn_deprecated(prog, option, f"--{spellings[option]}", "command-line option")
            arg = f"--{spellings[option]}{equals}{value}"
        renamed.append(arg)
    return renamed


def _join_negative_numbers(args: list[str]) -> list[str]:
    """``--x -1e-5`` -> ``--x=-1e-5``: argparse takes a negative number in scientific notation
    for an option and would report "expected one argument" instead of checking the value."""
    joined: list[str] = []
    for arg in args:
        previous = joined[-1] if joined else ""
        if previous.startswith("--") and "=" not in previous and arg.startswith("-") \
                and _is_number(arg):
            joined[-1] = f"{previous}={arg}"
        else:
            joined.append(arg)
    return joined


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cli_options(args: Sequence[str]) -> set[str]:
    """Destination names of the options given on the command line."""
    return {arg[2:].partition("=")[0].replace("-", "_") for arg in args if arg.startswith("--")}


class _Sources:
    """Where each option's value came from, so an error points at the right place: the command
    line, or the recipe file's line."""

    def __init__(self, cli: set[str], config_path: str | None, config: dict[str, Any]):
        self.cli, self.config_path, self.config = cli, config_path, config

    def error(self, message: str, option: str | None) -> InputError:
        if option is not None and option in self.cli:
            return InputError(f"command-line option --{option}: {message}")
        if option is not None and option in self.config and self.config_path is not None:
            return InputError(message, path=self.config_path,
                              line=yaml_line_of(self.config_path, option))
        return InputError(message)

    def option_named_in(self, message: str, known: set[str]) -> str | None:
        """The option a check's message is about: the first known option name it mentions."""
        mentioned = [(match.start(), match.group(1)) for match in
                     re.finditer(r"(?<![\w-])-{0,2}([A-Za-z][\w-]*)", message)]
        names = [name.replace("-", "_") for _, name in sorted(mentioned)]
        return next((name for name in names if name in known), None)


def _check_learning_rates(parsed: Sequence[Any], sources: _Sources) -> None:
    """A negative learning rate trains backwards; optimizers report it deep inside a run."""
    for instance in parsed:
        for name, value in vars(instance).items():
            if (name == "lr" or name.endswith("learning_rate")) and isinstance(value, (int, float)) \
                    and value < 0:
                raise sources.error(f"{name} must be >= 0, got {value}", name)


def parse_config(dataclass_types: Sequence[type], argv: Sequence[str] | None,
                 *, prog: str, description: str,
                 defaults: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """Parse ``--config FILE`` and ``--key value`` overrides into instances of ``dataclass_types``.

    Fields live in the dataclasses (each with a ``help`` text, so ``--help`` documents them all).
    ``defaults`` are this command's own defaults for options of shared groups (a PRM scores 16
    responses per forward pass where a generator runs 32 sequences per call); ``--help`` shows
    them, and a recipe or the command line overrides them.
    Errors name their source: ``recipe.yaml:3: ...`` for a value from the recipe file,
    ``command-line option --x: ...`` for one given on the command line.
    """
    parser = _RaisingParser(list(dataclass_types), prog=prog, description=description,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", metavar="YAML", help="recipe file whose keys set the defaults "
                        "of the options below; options given on the command line override it")
    known = {action.dest for action in parser._actions}
    if defaults:
        unknown_defaults = set(defaults) - known
        if unknown_defaults:  # a programming error, not a user's
            raise ValueError(f"defaults for options no group declares: {sorted(unknown_defaults)}")
        parser.set_defaults(**defaults)
    aliases = deprecated_aliases(dataclass_types)
    args = _join_negative_numbers(
        _rename_cli_aliases(list(argv) if argv is not None else [], aliases, prog))
    config_path, config = None, {}
    if "--config" in args:
        at = args.index("--config")
        if at + 1 >= len(args):
            raise InputError("--config needs a YAML file path")
        config_path = args[at + 1]
        del args[at:at + 2]
        config = load_yaml(config_path)
        config.pop("env", None)
        for old, new in aliases.items():
            if old in config:
                _warn_deprecated(prog, old, new, f"key in {config_path}")
                config.setdefault(new, config.pop(old))
        for key in config:
            if key not in known:
                raise InputError(f"unknown option '{key}' (see --help for the options)",
                                 path=config_path, line=yaml_line_of(config_path, key))
        parser.set_defaults_with_config(**config)
    sources = _Sources(_cli_options(args), config_path, config)
    try:
        *parsed, unknown = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    except InputError:
        raise
    except (ValueError, TypeError) as err:  # a dataclass __post_init__ check
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise sources.error(message, sources.option_named_in(message, known)) from None
    if unknown:
        raise InputError(f"unknown option(s): {' '.join(unknown)} (see --help for the options)")
    _check_learning_rates(parsed, sources)
    return tuple(parsed)
