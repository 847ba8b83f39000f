"""Files of the published repositories that primekit's protocols and prompts cite, for the tests that
compare a cited line with its source.

Copies of those repositories live in one folder, ``PRIMEKIT_UPSTREAM`` (default: ``../shared/upstream``
relative to the repository root, where the shared data lives), each under its GitHub name with the
slash written as ``+`` (``PRIME-RL+PRIME``, ``QwenLM+Qwen2.5-Math``), as a bare mirror in its ``repo``
subfolder or as a plain clone. Files are read at the pinned commit with ``git show``, never
downloaded.

When that folder exists, a missing repository, commit or file fails the test that needs it: a
citation that cannot be checked is a broken citation, not a skipped one. Only without the folder
(a checkout with no shared data beside it) do those tests skip.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = Path(os.environ.get("PRIMEKIT_UPSTREAM") or REPO_ROOT.parent / "shared" / "upstream")

# The commits primekit cites, per repository (PRIME's and Qwen's are also primekit.eval.protocols'
# PRIME_COMMIT and QWEN_COMMIT, checked equal in test_upstream_mirrors.py).
PINNED = {"PRIME-RL/PRIME": "18ad596f08d487bb546d80d738d99ec697bd2e75",
          "QwenLM/Qwen2.5-Math": "a45202bd16f1ec06f433442dc1152d0074773465",
          "PRIME-RL/ImplicitPRM": "c04417559fdbd59738187c613c6c31821e964431"}


def _object_store(repo: str) -> Path | None:
    """The object folder of ``repo``'s copy: ``repo/objects`` of a bare mirror, ``.git/objects`` of
    a clone."""
    folder = UPSTREAM / repo.replace("/", "+")
    for candidate in (folder / "repo" / "objects", folder / "objects", folder / ".git" / "objects"):
        if candidate.is_dir():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def _scratch_git_dir() -> str:
    """An empty repository to run ``git show`` in: mirrors copied without their (empty) ``refs``
    folder are not repositories to git, but their objects read fine through GIT_OBJECT_DIRECTORY."""
    path = Path(tempfile.mkdtemp(prefix="primekit-upstream-")) / "scratch.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True, capture_output=True)
    return str(path)


def _git_show(objects: Path, spec: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_DIR": _scratch_git_dir(), "GIT_OBJECT_DIRECTORY": str(objects)}
    env.pop("GIT_ALTERNATE_OBJECT_DIRECTORIES", None)
    return subprocess.run(["git", "show", spec], capture_output=True, text=True, env=env)


def upstream_file(repo: str, path: str, commit: str) -> str | None:
    """``path`` of GitHub repository ``repo`` (``owner/name``) at ``commit``; None without a copy
    or when that commit does not have the file."""
    objects = _object_store(repo)
    if objects is None:
        return None
    done = _git_show(objects, f"{commit}:{path}")
    return done.stdout if done.returncode == 0 else None


def has_commit(repo: str, commit: str) -> bool:
    objects = _object_store(repo)
    return objects is not None and _git_show(objects, f"{commit}^{{commit}}").returncode == 0


def require_upstream_file(repo: str, path: str, commit: str) -> str:
    """``upstream_file``; skips only when the upstream folder is absent, fails when it is there but
    lacks the repository, the commit or the file."""
    if not UPSTREAM.is_dir():
        pytest.skip(f"no folder of published repositories at {UPSTREAM} (PRIMEKIT_UPSTREAM)")
    if _object_store(repo) is None:
        pytest.fail(f"{UPSTREAM} has no copy of {repo} ({repo.replace('/', '+')}/repo)")
    if not has_commit(repo, commit):
        pytest.fail(f"the copy of {repo} in {UPSTREAM} lacks the pinned commit {commit}")
    text = upstream_file(repo, path, commit)
    if text is None:
        pytest.fail(f"{repo} at {commit[:7]} has no file {path}")
    return text
