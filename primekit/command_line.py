"""Running one sub-command as a console program: an :class:`InputError` becomes one line on stderr
with exit status 2, an interrupt a line saying that finished results are kept (status 130).

:mod:`primekit.cli` runs every sub-command through :func:`run_command`; a sub-command module that is
also an entry point of its own (``python -m primekit.prm.commands`` under accelerate) uses it
directly, so no ``commands`` module imports the console dispatcher.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from primekit.errors import InputError

__all__ = ["run_command"]


def run_command(prog: str, name: str, command: Callable[[list[str]], int | None],
                argv: Sequence[str]) -> int:
    """``command(argv)``'s exit status; a user's mistake is one line on stderr (status 2)."""
    try:
        return int(command(list(argv)) or 0)
    except InputError as err:
        print(f"{prog} {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog} {name}: interrupted; finished results are kept and a re-run resumes",
              file=sys.stderr)
        return 130
