"""One PRIME generation step on a fixed global batch, run under ``torchrun`` (any number of
processes); writes the kept batch's advantages and masks (in kept order) and the PRM's weights
after its update, so the test can compare 1 and 2 processes.

    torchrun --nproc_per_node 2 tests/rl_distributed_worker.py MODEL_DIR OUT.pt
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from primekit.rl.batch import row_assignment  # noqa: E402
from rl_support import build_trainer, first_batch  # noqa: E402

# 8 groups sampled, 4 kept: the 3 inside the accuracy band and a failing one with zero weight
PATTERNS = ["1000", "1111", "0110", "0000", "1111", "0000", "1101", "0000"]
GLOBAL_TRAINED = 16  # responses trained on per step, over all processes
PRM_MINI_BATCH = 8   # two PRM optimizer steps per training step


def run_step(model_dir: str, processes: int) -> dict:
    """PRIME's first step on ``PATTERNS``; on the main process, the kept batch and PRM weights."""
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(model_dir, PATTERNS, Path(scratch), oversample_factor=2,
                                per_device_train_batch_size=GLOBAL_TRAINED // processes,
                                prm_mini_batch_size=PRM_MINI_BATCH, prm_micro_batch_size=2,
                                train_on_failing=False)
        output = first_batch(trainer)
        width = 8
        assignment = row_assignment(GLOBAL_TRAINED, PRM_MINI_BATCH, processes).reshape(-1)
        kept = {}
        for key in ("advantages", "completion_mask", "completion_ids"):
            local = torch.nn.functional.pad(output[key].float(), (0, width - output[key].shape[1]))
            gathered = trainer.accelerator.gather(local)
            kept[key] = torch.empty_like(gathered)
            kept[key][assignment] = gathered
        prm = trainer.accelerator.unwrap_model(trainer.prm)
        return {"kept": kept, "num_items": int(output["num_items_in_batch"]),
                "prm": {k: v.detach().clone() for k, v in prm.state_dict().items()},
                "metrics": {k: list(v) for k, v in trainer._metrics["train"].items() if k.startswith("prm/")},
                "is_main": trainer.accelerator.is_main_process}


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    result = run_step(model_dir, int(os.environ.get("WORLD_SIZE", "1")))  # torchrun's process count
    if result.pop("is_main"):
        torch.save(result, out)


if __name__ == "__main__":
    main()
