"""Files of the published repositories that primekit's protocols and prompts cite, for the tests that
compare a cited line with its source.

Clones (bare or not) of those repositories live in one folder, ``PRIMEKIT_UPSTREAM`` (default:
``../upstream`` beside the repository, next to ``../shared``), each under its GitHub name with the
slash written as ``+`` (``PRIME-RL+PRIME``, ``QwenLM+Qwen2.5-Math``), as a plain clone or a bare
mirror in its ``repo`` subfolder. Without a clone those tests skip: the files are read at the
pinned commit, never downloaded.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

UPSTREAM = Path(os.environ.get("PRIMEKIT_UPSTREAM", Path(__file__).resolve().parents[2] / "upstream"))


def _clone(repo: str) -> Path | None:
    folder = UPSTREAM / repo.replace("/", "+")
    for candidate in (folder / "repo", folder):
        if candidate.is_dir():
            return candidate
    return None


def upstream_file(repo: str, path: str, commit: str) -> str | None:
    """``path`` of GitHub repository ``repo`` (``owner/name``) at ``commit``; None without a clone
    or when that commit does not have the file."""
    clone = _clone(repo)
    if clone is None:
        return None
    done = subprocess.run(["git", "-C", str(clone), "show", f"{commit}:{path}"], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def require_upstream_file(repo: str, path: str, commit: str) -> str:
    """``upstream_file``, or skip the test that needs it, saying where the clone goes."""
    text = upstream_file(repo, path, commit)
    if text is None:
        pytest.skip(f"no clone of {repo} at {commit[:7]} with {path} in {UPSTREAM} (PRIMEKIT_UPSTREAM)")
    return text
