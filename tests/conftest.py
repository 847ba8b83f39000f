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
