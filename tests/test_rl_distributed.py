"""Two processes (torchrun, gloo, accelerate's MULTI_CPU) give the same PRIME step as one.

Both runs see the same global generation batch (scripted responses, so sampling randomness is
out of the picture); what is compared is everything PRIME adds after generation: the gathered
filter decision, the PRM update (two mini-batches, micro-batched, gradients averaged by DDP) and
the per-token advantages of every kept response.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rl_distributed_worker import run_step
from rl_support import save_tiny_policy

WORKER = Path(__file__).resolve().parent / "rl_distributed_worker.py"


def _torchrun(processes: int, model_dir: str, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(29500 + processes + os.getpid() % 1000), str(WORKER), model_dir, str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out, weights_only=False)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    model_dir = save_tiny_policy(tmp_path / "policy")
    single = run_step(model_dir, processes=1)  # in this process: no launcher needed for one
    double = _torchrun(2, model_dir, tmp_path / "two.pt")
    assert torch.equal(single["kept"]["completion_ids"], double["kept"]["completion_ids"])
    assert torch.equal(single["kept"]["completion_mask"], double["kept"]["completion_mask"])
    assert single["num_items"] == double["num_items"]
    torch.testing.assert_close(double["kept"]["advantages"], single["kept"]["advantages"], atol=1e-5, rtol=1e-5)
    assert single["metrics"]["prm/loss"] == pytest.approx(double["metrics"]["prm/loss"], abs=1e-6)
    # Two AdamW steps of lr 1e-3 move every weight by about 2e-3. Summation order differs between
    # one process and DDP's all-reduce, and Adam turns the float noise of near-zero gradients (the
    # key biases, to which softmax is invariant) into differences of ~1e-6: allow 0.5% of a step.
    initial = load_file(str(Path(model_dir) / "model.safetensors"))
    moved = max((single["prm"][name] - initial[name]).abs().max().item() for name in initial)
    assert moved == pytest.approx(2e-3, rel=0.01)
    for name, value in single["prm"].items():
        torch.testing.assert_close(double["prm"][name], value, atol=1e-5, rtol=0, msg=name)
