"""Console entry points. Each is a thin dispatcher: pick the sub-command and run it with the
remaining arguments through :func:`primekit.command_line.run_command` (a user's mistake is one line
on stderr with exit status 2).

Sub-commands live next to the code they drive (``primekit/<part>/commands.py``); each is a
function ``(argv: list[str]) -> int`` that parses its own options with :mod:`primekit.config`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from primekit.command_line import run_command

COMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "prime-prm": {
        "train": ("primekit.prm.commands:train", "train an implicit PRM on outcome labels or pairs"),
        "score": ("primekit.prm.commands:score", "token / step / sequence rewards for a JSONL of responses"),
        "convert": ("primekit.prm.commands:convert", "published PRM data (EurusPRM-Stage1-Data) to training JSONL"),
    },
    "prime-eval": {
        "run": ("primekit.eval.commands:run", "generate and grade a model on math benchmarks (resumable)"),
        "grade": ("primekit.eval.commands:grade", "grade an existing JSONL of model outputs"),
        "prompts": ("primekit.eval.commands:prompts", "print the exact prompts of a protocol"),
        "compare": ("primekit.eval.commands:compare", "paired bootstrap difference of two runs"),
        "leaderboard": ("primekit.eval.commands:leaderboard", "Markdown / HTML / PNG report from run folders"),
        "processbench": ("primekit.eval.commands:processbench", "first-error-step F1 of a PRM on ProcessBench"),
        "check-references": ("primekit.eval.references:check_references",
                             "run each benchmark's reference solutions / gold answers through its verifier"),
    },
    "prime-bon": {
        "rerank": ("primekit.bon.commands:rerank", "score candidates once, report Best-of-N accuracy vs N"),
        "sample": ("primekit.bon.commands:sample", "generate N candidates per problem (resumable)"),
    },
    "prime-rl": {
        "train": ("primekit.rl.commands:train", "PRIME online RL (or RLOO / frozen-PRM baselines) on TRL"),
        "plan": ("primekit.rl.commands:plan", "memory per GPU of a train run (DDP / FSDP2 / offload): fits or not"),
        "config": ("primekit.rl.commands:show_config", "the configuration a train run really runs with (TRL, FSDP, schedule)"),
        "diagnose": ("primekit.rl.commands:diagnose", "where RLOO's / PRIME's update lands on labelled errors"),
    },
}


def _usage(prog: str) -> str:
    lines = [f"usage: {prog} <command> [options]   ({prog} <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<13} {help_text}" for name, (_, help_text) in COMMANDS[prog].items()]
    return "\n".join(lines)


def dispatch(prog: str, argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(_usage(prog))
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS[prog]:
        print(f"{prog}: error: unknown command '{name}' (choose from {', '.join(COMMANDS[prog])})",
              file=sys.stderr)
        return 2
    module_name, function_name = COMMANDS[prog][name][0].split(":")
    # a sub-command's module is imported only when it runs: each pulls in its own heavy stack
    command = getattr(importlib.import_module(module_name), function_name)
    return run_command(prog, name, command, rest)


def prm_main() -> None:
    sys.exit(dispatch("prime-prm"))


def eval_main() -> None:
    sys.exit(dispatch("prime-eval"))


def bon_main() -> None:
    sys.exit(dispatch("prime-bon"))


def rl_main() -> None:
    sys.exit(dispatch("prime-rl"))
