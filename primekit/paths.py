"""Where primekit finds shared data and keeps its caches.

One setting each, so that a user can point them anywhere: ``PRIMEKIT_DATA`` (benchmarks,
ProcessBench, Best-of-N sets; default ``../shared/data`` beside the repository) and
``PRIMEKIT_CACHE`` (the toy policy and other derived artefacts; default ``.cache/primekit`` in the
repository, or ``~/.cache/primekit`` for an installed package).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Root of the shared data (``PRIMEKIT_DATA``)."""
    configured = os.environ.get("PRIMEKIT_DATA")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"


def recipes_dir() -> Path:
    """The YAML recipes: the copy a wheel ships inside the package, else the repository's
    ``recipes/`` folder (a checkout or an editable install)."""
    packaged = Path(__file__).resolve().parent / "recipes"
    return packaged if packaged.is_dir() else REPO_ROOT / "recipes"


def cache_dir() -> Path:
    """Root of primekit's caches (``PRIMEKIT_CACHE``)."""
    configured = os.environ.get("PRIMEKIT_CACHE")
    if configured:
        return Path(configured)
    if (REPO_ROOT / "setup.cfg").exists():
        return REPO_ROOT / ".cache" / "primekit"
    return Path.home() / ".cache" / "primekit"
