"""YAML config + ``--key value`` overrides for every command, in TRL's style.

We use TRL's :class:`~trl.TrlParser` (``--config recipe.yaml`` sets defaults, the command line
overrides them) and only add what users need from a CLI: every mistake — an unknown key in the
YAML, a bad value, a failed ``__post_init__`` check — becomes one :class:`InputError` line that
names the file, line and key, instead of an argparse dump or a traceback.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from trl import TrlParser

from primekit.errors import InputError


def help_text(text: str) -> dict[str, str]:
    """Field metadata for a dataclass option: ``field(default=..., metadata=help_text("..."))``."""
    return {"help": text}


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


def _yaml_line_of(path: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*:")
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def _load_yaml(path: str) -> dict[str, Any]:
    if not Path(path).is_file():
        raise InputError("config file not found", path=path)
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise InputError(f"invalid YAML ({getattr(err, 'problem', err)})", path=path,
                         line=None if mark is None else mark.line + 1) from None
    if not isinstance(config, dict):
        raise InputError("a config file must hold a YAML mapping of option: value", path=path)
    return config


def parse_config(dataclass_types: Sequence[type], argv: Sequence[str] | None,
                 *, prog: str, description: str) -> tuple[Any, ...]:
    """Parse ``--config FILE`` and ``--key value`` overrides into instances of ``dataclass_types``.

    Fields live in the dataclasses (each with a ``help`` text, so ``--help`` documents them all).
    """
    parser = _RaisingParser(list(dataclass_types), prog=prog, description=description,
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", metavar="YAML", help="recipe file whose keys set the defaults "
                        "of the options below; options given on the command line override it")
    args = list(argv) if argv is not None else []
    config_path = None
    if "--config" in args:
        at = args.index("--config")
        if at + 1 >= len(args):
            raise InputError("--config needs a YAML file path")
        config_path = args[at + 1]
        del args[at:at + 2]
        config = _load_yaml(config_path)
        config.pop("env", None)
        known = {action.dest for action in parser._actions}
        for key in config:
            if key not in known:
                raise InputError(f"unknown option '{key}' (see --help for the options)",
                                 path=config_path, line=_yaml_line_of(config_path, key))
        parser.set_defaults_with_config(**config)
    try:
        *parsed, unknown = parser.parse_args_into_dataclasses(args=args, return_remaining_strings=True)
    except InputError:
        raise
    except (ValueError, TypeError) as err:  # a dataclass __post_init__ check
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(message, path=config_path) from None
    if unknown:
        raise InputError(f"unknown option(s): {' '.join(unknown)} (see --help for the options)")
    return tuple(parsed)
