"""Two processes (torchrun, gloo) give the same PRIME step as one, under DDP and under FSDP2, and so
do 2 "machines" x 2 processes on localhost; under FSDP2 with gradient accumulation the gradients stay
sharded between micro-batches.

Both runs see the same global generation batch (scripted responses, so sampling randomness is
out of the picture) and take one full training step; what is compared is everything PRIME adds
after generation -- the gathered filter decision, the PRM update (two mini-batches,
micro-batched, gradients averaged by DDP or reduce-scattered by FSDP2), the per-token advantages
of every kept response -- and the policy's weights after TRL's optimizer step. Under FSDP2 the
policy, the PRM and the PRM's reference are all sharded over the two processes.
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
POLICY_LR, PRM_LR = 1e-4, 1e-3  # rl_support's defaults


def _two_machines(model_dir: str, out: Path, backend: str) -> dict:
    """The worker on 2 "machines" x 2 processes on this host: two torchrun launchers, static
    rendezvous on 127.0.0.1 (node ranks 0 and 1), as two machines are launched."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    port = str(29700 + os.getpid() % 1000)
    launchers = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
                                   "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", port,
                                   str(WORKER), model_dir, str(out), backend],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    for launcher in launchers:
        _, stderr = launcher.communicate(timeout=300)
        assert launcher.returncode == 0, stderr[-3000:]
    return torch.load(out, weights_only=False)


def _torchrun(processes: int, model_dir: str, out: Path, backend: str, *extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(29500 + processes + os.getpid() % 1000), str(WORKER), model_dir, str(out),
               backend, *extra]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    model_dir = save_tiny_policy(tmp_path_factory.mktemp("policy"))
    return model_dir, run_step(model_dir, processes=1)  # in this process: no launcher needed for one


def _moved(after: dict[str, torch.Tensor], model_dir: str) -> float:
    initial = load_file(str(Path(model_dir) / "model.safetensors"))
    return max((after[name] - initial[name]).abs().max().item() for name in initial)


@pytest.mark.slow
@pytest.mark.parametrize("backend, machines", [("ddp", 1), ("fsdp2", 1), ("fsdp2", 2)])
def test_two_processes_match_one(single_process, tmp_path, backend, machines):
    # machines 2: two launchers of two processes each on localhost (4 processes, 2 per "node")
    model_dir, single = single_process
    double = (_torchrun(2, model_dir, tmp_path / "two.pt", backend) if machines == 1
              else _two_machines(model_dir, tmp_path / "four.pt", backend))
    assert torch.equal(single["kept"]["completion_ids"], double["kept"]["completion_ids"])
    assert torch.equal(single["kept"]["completion_mask"], double["kept"]["completion_mask"])
    assert single["num_items"] == double["num_items"]
    torch.testing.assert_close(double["kept"]["advantages"], single["kept"]["advantages"], atol=1e-5, rtol=1e-5)
    assert single["metrics"]["prm/loss"] == pytest.approx(double["metrics"]["prm/loss"], abs=1e-6)
    # Two AdamW steps of lr 1e-3 move every PRM weight by about 2e-3, one step of lr 1e-4 every
    # policy weight by about 1e-4. Summation order differs between one process and the
    # all-reduce / reduce-scatter, and Adam turns the float noise of near-zero gradients (the key
    # biases, to which softmax is invariant) into differences of ~1e-6 (PRM) and ~1e-6 (policy; the PRM's
    # micro-batches are all-reduced one by one, which changes its float noise and so the policy's
    # advantages in their last bits): allow 0.5% and 2% of a step.
    assert _moved(single["prm"], model_dir) == pytest.approx(2 * PRM_LR, rel=0.01)
    assert _moved(single["policy"], model_dir) == pytest.approx(POLICY_LR, rel=0.05)
    for name, value in single["prm"].items():
        torch.testing.assert_close(double["prm"][name], value, atol=0.005 * 2 * PRM_LR, rtol=0, msg=name)
    for name, value in single["policy"].items():
        torch.testing.assert_close(double["policy"][name], value, atol=0.02 * POLICY_LR, rtol=0, msg=name)


@pytest.mark.slow
def test_an_fsdp2_checkpoint_restores_the_prm_and_its_sharded_optimizer(single_process, tmp_path):
    # Under FSDP2 the PRM's full weights are gathered into a loadable folder and its optimizer
    # state is written shard by shard (torch.distributed.checkpoint); a resumed run starts from both.
    model_dir, _ = single_process
    resumed = _torchrun(2, model_dir, tmp_path / "resume.pt", "fsdp2", str(tmp_path / "run"))
    assert resumed["optimizer_step"] == 2.0  # two PRM mini-batches in the checkpointed step
    assert resumed["saved"].keys() <= resumed["prm"].keys()
    for name, value in resumed["saved"].items():
        assert torch.equal(resumed["prm"][name], value), name


@pytest.mark.slow
def test_fsdp2_gradients_stay_sharded_through_accumulation_and_match_one_fp32_process(tmp_path):
    # Two processes, FSDP2, bf16 compute, 4 policy micro-batches per optimizer step (2 PRM
    # micro-batches per PRM mini-batch). With gradients reduce-scattered on every micro-batch each
    # process holds half of each model's gradient between micro-batches; with the HF Trainer's
    # no_sync it holds the whole unsharded gradient until the last one.
    from rl_distributed_worker import run_accumulation

    model_dir = save_tiny_policy(tmp_path / "policy")
    reference = run_accumulation(model_dir, processes=1, backend="ddp", bf16=False)["runs"][True]
    runs = _torchrun(2, model_dir, tmp_path / "accumulate.pt", "fsdp2", "accumulate-bf16")["runs"]
    synced, deferred = runs[True], runs[False]
    assert synced["reduce_dtypes"] == {"policy": {"float32"}, "prm": {"float32"}}
    # rank 0's shards: dim-0 halves, rounded up where a dimension is odd
    assert synced["held_policy"] == pytest.approx(0.5, abs=0.02)
    assert synced["held_prm"] == pytest.approx(0.5, abs=0.02)
    assert deferred["held_policy"] >= 0.99 and deferred["held_prm"] >= 0.99
    # bf16 compute against fp32: the accumulated gradient agrees to 3% of its norm (measured: at most
    # 1.7%), parameter by
    # parameter (fp32 reduction, so accumulation adds no bf16 rounding of its own)
    for name, expected in reference["gradient"].items():
        got = synced["gradient"][name.removeprefix("module.")]
        error = (got - expected).norm() / expected.norm().clamp(min=1e-12)
        assert error < 0.03, f"{name}: relative gradient error {error:.4f}"
    # Adam's first step is lr * g / |g| per weight: the same update wherever bf16 does not flip the
    # sign of a near-zero gradient; 99% of the weights move identically (within 1% of lr)
    initial = load_file(str(Path(model_dir) / "model.safetensors"))
    same = total = 0
    for name, before in initial.items():
        moved_ref = reference["policy"][name] - before
        moved = synced["policy"][name] - before
        same += int(((moved - moved_ref).abs() <= 0.01 * POLICY_LR).sum())
        total += before.numel()
    assert same / total >= 0.99
