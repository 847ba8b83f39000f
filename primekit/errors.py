"""One exception type for every problem a user can fix, printed by the CLI as a single line.

Library errors (a KeyError deep inside ``datasets``, a sympy parse failure) are translated into
:class:`InputError` at the boundary where we still know *which* file, line and field was at fault.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """Bad user input: a file, line, field or option the user can correct.

    ``str(err)`` is a complete one-line message, e.g.
    ``data/x.jsonl:12: field 'label': expected 0 or 1, got 'yes'``.
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None,
                 line: int | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        what = f"field '{field}': " if field is not None else ""
        super().__init__(f"{where}{what}{message}")
