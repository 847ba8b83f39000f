"""A PRIME run killed with SIGKILL after a checkpoint resumes from it: same step, PRM weights and
PRM optimizer restored from the checkpoint, and it runs to the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from transformers import TrainerCallback

from primekit.config import latest_checkpoint, resume_checkpoint
from primekit.models import load_tokenizer
from primekit.rl.checkpoint import PRM_DIR, PRM_OPTIMIZER_DIR
from primekit.rl.commands import parse_train_args
from primekit.rl.data import load_prompt_dataset
from primekit.rl.trainer import PrimeTrainer
from rl_support import write_cli_recipe


class _PRMAtStart(TrainerCallback):
    """Records the PRM and its optimizer's step count when training (re)starts."""

    def __init__(self):
        self.trainer = None
        self.weights: dict[str, torch.Tensor] = {}
        self.optimizer_steps: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        prm = self.trainer.accelerator.unwrap_model(self.trainer.prm)
        self.weights = {k: v.detach().clone() for k, v in prm.state_dict().items()}
        self.optimizer_steps = float(next(iter(self.trainer.prm_optimizer.state.values()))["step"])


def _run_until_checkpoint(recipe: Path, output_dir: Path, timeout: float = 180) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "primekit.rl.commands", "--config", str(recipe)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while latest_checkpoint(output_dir) is None:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint written in time"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path):
    recipe = write_cli_recipe(tmp_path, max_steps=1000, save_steps=2)
    output_dir = tmp_path / "run"
    _run_until_checkpoint(recipe, output_dir)
    checkpoint = latest_checkpoint(output_dir)
    step = int(checkpoint.name.split("-")[1])
    assert step >= 2 and (checkpoint / PRM_DIR / "model.safetensors").is_file()
    assert (checkpoint / PRM_OPTIMIZER_DIR / ".metadata").is_file()

    run, config = parse_train_args(["--config", str(recipe), "--max_steps", str(step + 2),
                                    "--resume_from_checkpoint", "true"])
    dataset = load_prompt_dataset(run.dataset)
    probe = _PRMAtStart()
    trainer = PrimeTrainer(model=run.model, args=config, train_dataset=dataset,
                           processing_class=load_tokenizer(run.model), callbacks=[probe])
    probe.trainer = trainer
    resume = resume_checkpoint(config.resume_from_checkpoint, config.output_dir)
    assert resume == str(checkpoint)  # "true" means the newest complete checkpoint
    trainer.train(resume_from_checkpoint=resume)

    saved = load_file(str(checkpoint / PRM_DIR / "model.safetensors"))
    assert saved.keys() <= probe.weights.keys()
    for name, value in saved.items():
        assert torch.equal(probe.weights[name], value), name
    dcp_to_torch_save(checkpoint / PRM_OPTIMIZER_DIR, tmp_path / "prm_optimizer.pt")
    saved_optimizer = torch.load(tmp_path / "prm_optimizer.pt", weights_only=False)["optimizer"]["state"]
    assert probe.optimizer_steps == float(next(iter(saved_optimizer.values()))["step"]) == step
    assert trainer.state.global_step == step + 2
    # the resumed run continued the PRM (weights moved on from the checkpoint's)
    final = trainer.accelerator.unwrap_model(trainer.prm).state_dict()
    assert any(not torch.equal(final[name], value) for name, value in saved.items())
