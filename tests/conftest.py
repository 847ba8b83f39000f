"""Test-wide settings: offline hub, one torch thread per process (the CI machine has 2 cores and
parallel torch work there is 5-30x slower), and shared fixtures for the tiny models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("PRIMEKIT_TEST_THREADS", "2")))


import pytest  # noqa: E402

from primekit.toy import qwen_shaped  # noqa: E402


def _require_qwen2_tokenizer() -> None:
    if not (qwen_shaped.tokenizer_dir() / "tokenizer.json").is_file():
        pytest.skip(f"no Qwen2 tokenizer at {qwen_shaped.tokenizer_dir()} (the shared data's "
                    "tokenizers/qwen2; PRIMEKIT_DATA)")


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """Qwen2's real tokenizer (../shared/data/tokenizers/qwen2) with Qwen2.5-Math-Instruct's chat
    template: <|im_end|> ends a turn and is the EOS, <|endoftext|> pads."""
    _require_qwen2_tokenizer()
    return qwen_shaped.build_tokenizer()


@pytest.fixture(scope="session")
def qwen_shaped_path() -> str:
    """A saved random Qwen-shaped model (hidden 64, untied 151,936-column head, the real tokenizer),
    built once and cached under PRIMEKIT_CACHE."""
    _require_qwen2_tokenizer()
    return str(qwen_shaped.model_path())
