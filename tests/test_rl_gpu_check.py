"""benchmarks/gpu_check.py's CPU smoke mode: the one-GPU check's code path (a Qwen2 shape with the real
151,936-token vocabulary and an untied head, PRIME and GRPO, 4 micro-batches per optimizer step) runs
end to end and prints the plan by phase and the step times."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from primekit.paths import REPO_ROOT

TOKENIZER = REPO_ROOT.parent / "shared" / "data" / "tokenizers" / "qwen2"


@pytest.mark.slow
@pytest.mark.skipif(not TOKENIZER.is_dir(), reason="the Qwen2 tokenizer of the shared data is not here")
def test_gpu_check_smoke_mode_runs_on_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "vocabulary 151936, untied head, 4 micro-batches per optimizer step" in out
    for phase in ("generation", "PRM update", "policy update"):
        assert f"| {phase} |" in out
    assert "memory: not measured on CPU" in out and "PRIME/GRPO step time:" in out
