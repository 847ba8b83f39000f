"""Files of the published repositories that primekit's protocols and prompts cite, for the tests that
compare a cited line with its source (read by :mod:`primekit.eval.upstream`: ``PRIMEKIT_UPSTREAM``,
default ``../shared/upstream`` relative to the repository root, bare mirrors or clones).

When that folder exists, a missing repository, commit or file fails the test that needs it: a
citation that cannot be checked is a broken citation, not a skipped one. Only without the folder
(a checkout with no shared data beside it) do those tests skip.
"""

from __future__ import annotations

import pytest

from primekit.eval.upstream import PINNED, has_commit, object_store, read_file, upstream_root

UPSTREAM = upstream_root()

__all__ = ["PINNED", "UPSTREAM", "has_commit", "require_upstream_file", "upstream_file"]


def upstream_file(repo: str, path: str, commit: str) -> str | None:
    """``path`` of GitHub repository ``repo`` (``owner/name``) at ``commit``; None without a copy
    or when that commit does not have the file."""
    return read_file(repo, path, commit)


def require_upstream_file(repo: str, path: str, commit: str) -> str:
    """``upstream_file``; skips only when the upstream folder is absent, fails when it is there but
    lacks the repository, the commit or the file."""
    root = upstream_root()
    if not root.is_dir():
        pytest.skip(f"no folder of published repositories at {root} (PRIMEKIT_UPSTREAM)")
    if object_store(repo) is None:
        pytest.fail(f"{root} has no copy of {repo} ({repo.replace('/', '+')}/repo)")
    if not has_commit(repo, commit):
        pytest.fail(f"the copy of {repo} in {root} lacks the pinned commit {commit}")
    text = upstream_file(repo, path, commit)
    if text is None:
        pytest.fail(f"{repo} at {commit[:7]} has no file {path}")
    return text
