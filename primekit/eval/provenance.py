"""What a result was made with, recorded next to it: primekit and grader versions, the date, and
the model's revision (the hub commit, or a fingerprint of a local folder's files)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from pathlib import Path

import primekit

_FINGERPRINT_BYTES = 1 << 20  # per weight file: its size and first and last MiB


def primekit_version() -> str:
    return primekit.__version__


def today() -> str:
    return _dt.date.today().isoformat()


def model_revision(name_or_path: str | os.PathLike) -> str | None:
    """``sha:<12 hex>`` of a local model folder (config, tokenizer files, and each weight file's
    size and first and last MiB: cheap at 7B, and it changes when the weights do), or the hub
    commit a hub name resolves to in the local cache; None when neither can be told."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(file.name.encode() + b"\0")
            size = file.stat().st_size
            digest.update(str(size).encode())
            with file.open("rb") as handle:
                digest.update(handle.read(_FINGERPRINT_BYTES))
                if size > 2 * _FINGERPRINT_BYTES:
                    handle.seek(-_FINGERPRINT_BYTES, os.SEEK_END)
                    digest.update(handle.read())
        return f"sha:{digest.hexdigest()[:12]}"
    try:
        from transformers import AutoConfig  # loads torch; only for a hub model's commit

        commit = getattr(AutoConfig.from_pretrained(str(name_or_path)), "_commit_hash", None)
    except (OSError, ValueError):
        return None
    return None if commit is None else f"hub:{commit[:12]}"
