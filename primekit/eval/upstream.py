"""The published repositories primekit cites, read at their pinned commits.

They live in one folder, ``PRIMEKIT_UPSTREAM`` (default ``../shared/upstream`` beside the
repository), each under its GitHub name with the slash written as ``+`` (``PRIME-RL+PRIME``), as a
bare mirror in its ``repo`` subfolder or as a plain clone. Files are read with ``git show`` and
trees exported with ``git archive`` at the pinned commit: nothing of them is copied into primekit.
The published graders (:mod:`primekit.eval.published`) run from such an export; the citation tests
read single files.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from primekit.errors import InputError
from primekit.paths import REPO_ROOT, cache_dir

PRIME_REPO, QWEN_REPO, IMPLICITPRM_REPO = "PRIME-RL/PRIME", "QwenLM/Qwen2.5-Math", "PRIME-RL/ImplicitPRM"
PINNED = {PRIME_REPO: "18ad596f08d487bb546d80d738d99ec697bd2e75",
          QWEN_REPO: "a45202bd16f1ec06f433442dc1152d0074773465",
          IMPLICITPRM_REPO: "c04417559fdbd59738187c613c6c31821e964431"}


def upstream_root() -> Path:
    """The folder of published repositories (``PRIMEKIT_UPSTREAM``)."""
    configured = os.environ.get("PRIMEKIT_UPSTREAM")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "upstream"


def object_store(repo: str) -> Path | None:
    """The object folder of ``repo``'s copy (``owner/name``): a bare mirror's ``repo/objects``, a
    clone's ``.git/objects``; None without a copy."""
    folder = upstream_root() / repo.replace("/", "+")
    for candidate in (folder / "repo" / "objects", folder / "objects", folder / ".git" / "objects"):
        if candidate.is_dir():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def _scratch_git_dir() -> str:
    """An empty repository to run git in: a mirror copied without its (empty) ``refs`` folder is
    no repository to git, but its objects read fine through ``GIT_OBJECT_DIRECTORY``."""
    path = Path(tempfile.mkdtemp(prefix="primekit-upstream-")) / "scratch.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True, capture_output=True)
    return str(path)


def git(repo: str, *args: str, text: bool = True) -> subprocess.CompletedProcess:
    """``git ARGS`` against the objects of ``repo``'s copy (which must exist)."""
    objects = object_store(repo)
    if objects is None:
        raise InputError(f"no copy of {repo} in {upstream_root()} (PRIMEKIT_UPSTREAM): expected "
                         f"{repo.replace('/', '+')}/repo, a bare mirror, or a clone")
    env = {**os.environ, "GIT_DIR": _scratch_git_dir(), "GIT_OBJECT_DIRECTORY": str(objects)}
    env.pop("GIT_ALTERNATE_OBJECT_DIRECTORIES", None)
    return subprocess.run(["git", *args], capture_output=True, text=text, env=env)


def has_commit(repo: str, commit: str) -> bool:
    return object_store(repo) is not None and git(repo, "cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


def read_file(repo: str, path: str, commit: str | None = None) -> str | None:
    """``path`` of ``repo`` at ``commit`` (default: the pinned one); None without a copy or when
    that commit has no such file."""
    if object_store(repo) is None:
        return None
    done = git(repo, "show", f"{commit or PINNED[repo]}:{path}")
    return done.stdout if done.returncode == 0 else None


def export_tree(repo: str, paths: tuple[str, ...], commit: str | None = None) -> Path:
    """The files under ``paths`` of ``repo`` at ``commit`` (default: the pinned one), exported
    once into primekit's cache with ``git archive``; the folder they are in."""
    commit = commit or PINNED[repo]
    wanted = "\n".join(paths)
    key = f"{repo.replace('/', '+')}@{commit[:12]}-{hashlib.sha256(wanted.encode()).hexdigest()[:8]}"
    target = cache_dir() / "upstream" / key
    stamp = target / ".exported"
    if stamp.is_file() and stamp.read_text() == wanted:
        return target
    if not has_commit(repo, commit):
        raise InputError(f"the copy of {repo} in {upstream_root()} lacks the pinned commit {commit}")
    done = git(repo, "archive", "--format=tar", commit, *paths, text=False)
    if done.returncode != 0:
        raise InputError(f"{repo} at {commit[:7]}: cannot export {', '.join(paths)}: "
                         f"{done.stderr.decode(errors='replace').strip()}")
    staging = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=_parent(target)))
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(staging, filter="data")
    (staging / ".exported").write_text(wanted)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)  # atomic: a half-written export is never used
    return target


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent
