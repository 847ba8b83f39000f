"""One PRIME training step on a fixed global batch, run under ``torchrun`` (any number of
processes) with DDP or FSDP2; writes the kept batch's advantages and masks (in kept order), the
PRM's and the policy's weights after their updates, so the tests can compare 1 and 2 processes.

    torchrun --nproc_per_node 2 tests/rl_distributed_worker.py MODEL_DIR OUT.pt [ddp|fsdp2]

accelerate turns FSDP on only for accelerator devices (GPUs and the like); on CPU processes it
stays in MULTI_CPU mode. :func:`force_fsdp_on_cpu` flips accelerate's state to FSDP after it was
set up, so that the whole FSDP2 code path -- accelerate's preparation of the policy, TRL's, and
PrimeTrainer's sharding of the PRM and its reference -- runs on CPU processes with gloo.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from primekit.rl.batch import row_assignment  # noqa: E402
from rl_support import build_trainer  # noqa: E402

# 8 groups sampled, 4 kept: the 3 inside the accuracy band and a failing one with zero weight
PATTERNS = ["1000", "1111", "0110", "0000", "1111", "0000", "1101", "0000"]
GLOBAL_TRAINED = 16  # responses trained on per step, over all processes
PRM_MINI_BATCH = 8   # two PRM optimizer steps per training step
FSDP2_SETTINGS = {"fsdp": "full_shard",
                  "fsdp_config": {"fsdp_version": 2, "transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"],
                                  "reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT"}}


def force_fsdp_on_cpu() -> None:
    """Make accelerate's CPU processes run FSDP (test-only shim, see the module docstring)."""
    import accelerate.state as state
    from accelerate.utils import DistributedType

    original_init = state.AcceleratorState.__init__
    plugins: list[Any] = []

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None:
            plugins[:] = [fsdp_plugin]
        if plugins and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                plugins[0].set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = plugins[0]

    state.AcceleratorState.__init__ = init


def _full_state(trainer, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if trainer.accelerator.is_fsdp2:
        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().clone() for k, v in trainer.accelerator.unwrap_model(model).state_dict().items()}


def run_step(model_dir: str, processes: int, backend: str = "ddp") -> dict:
    """PRIME's first training step on ``PATTERNS``; on the main process, the kept batch, the PRM's
    and the policy's weights after the step."""
    extra = FSDP2_SETTINGS if backend == "fsdp2" else {}
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(model_dir, PATTERNS, Path(scratch), oversample_factor=2,
                                per_device_train_batch_size=GLOBAL_TRAINED // processes,
                                prm_mini_batch_size=PRM_MINI_BATCH, prm_micro_batch_size=2,
                                train_on_failing=False, prm_update="before", prime_norm_scope="global",
                                **extra)
        if backend == "fsdp2":
            assert trainer.accelerator.is_fsdp2, "FSDP2 is not on"
        outputs, metrics = [], {}
        score = trainer._generate_and_score_completions

        def recorded(inputs):
            outputs.append(score(inputs))
            metrics.update({k: list(v) for k, v in trainer._metrics["train"].items() if k.startswith("prm/")})
            return outputs[-1]

        trainer._generate_and_score_completions = recorded
        trainer.train()
        output = outputs[0]
        width = 8
        assignment = row_assignment(GLOBAL_TRAINED, PRM_MINI_BATCH, processes).reshape(-1)
        kept = {}
        for key in ("advantages", "completion_mask", "completion_ids"):
            local = torch.nn.functional.pad(output[key].float(), (0, width - output[key].shape[1]))
            gathered = trainer.accelerator.gather(local)
            kept[key] = torch.empty_like(gathered)
            kept[key][assignment] = gathered
        return {"kept": kept, "num_items": int(output["num_items_in_batch"]),
                "prm": _full_state(trainer, trainer.prm), "policy": _full_state(trainer, trainer.model_wrapped),
                "metrics": metrics,
                "is_main": trainer.accelerator.is_main_process}


ACCUMULATION = 4  # micro-batches per optimizer step in the accumulation check


def held_gradient_fraction(model: torch.nn.Module) -> float:
    """Gradient elements this process holds for ``model`` over its parameter count: FSDP2's sharded
    gradients plus any unsharded gradient it accumulates while gradient sync is off; a plain
    gradient for a model that is not sharded."""
    total = sum(p.numel() for p in model.parameters())
    held = 0
    seen = set()
    for module in model.modules():
        if not hasattr(module, "_get_fsdp_state"):
            continue
        for group in module._get_fsdp_state()._fsdp_param_groups:
            for fsdp_param in group.fsdp_params:
                if id(fsdp_param) in seen:
                    continue
                seen.add(id(fsdp_param))
                if fsdp_param.unsharded_accumulated_grad is not None:
                    held += fsdp_param.unsharded_accumulated_grad.numel()
                unsharded = getattr(fsdp_param, "_unsharded_param", None)
                if unsharded is not None and unsharded.grad is not None:
                    held += unsharded.grad.numel()
                grad = fsdp_param.sharded_param.grad
                if grad is not None:
                    held += grad._local_tensor.numel() if hasattr(grad, "_local_tensor") else grad.numel()
    if not seen:
        held = sum(p.grad.numel() for p in model.parameters() if p.grad is not None)
    return held / total


def reduce_dtypes(model: torch.nn.Module) -> set[str]:
    """The reduce dtypes of the FSDP2 parameter groups of ``model``."""
    dtypes = set()
    for module in model.modules():
        if hasattr(module, "_get_fsdp_state"):
            for group in module._get_fsdp_state()._fsdp_param_groups:
                dtypes.add(str(group.mp_policy.reduce_dtype).removeprefix("torch."))
    return dtypes


def run_accumulation(model_dir: str, processes: int, backend: str, bf16: bool) -> dict:
    """One PRIME step with ``ACCUMULATION`` policy micro-batches (and two PRM micro-batches per PRM
    mini-batch), with gradient sync on every micro-batch and, under FSDP2, without it. Records the
    largest gradient each process holds between micro-batches (a fraction of each model), the
    policy's full gradient at its optimizer step, its weights after it, and the reduce dtypes."""
    from transformers import TrainerCallback

    results = {}
    for sync in ((True, False) if backend == "fsdp2" else (True,)):
        seen = {"policy": 0.0, "prm": 0.0, "gradient": {}}

        class AtOptimizerStep(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
                for name, parameter in model.named_parameters():
                    grad = parameter.grad
                    seen["gradient"][name] = (grad.full_tensor() if hasattr(grad, "full_tensor") else grad).float().clone()

        extra = FSDP2_SETTINGS if backend == "fsdp2" else {}
        with tempfile.TemporaryDirectory() as scratch:
            trainer = build_trainer(model_dir, PATTERNS, Path(scratch), callbacks=[AtOptimizerStep()],
                                    oversample_factor=2, bf16=bf16, max_grad_norm=1e9,
                                    per_device_train_batch_size=GLOBAL_TRAINED // processes // ACCUMULATION,
                                    gradient_accumulation_steps=ACCUMULATION, steps_per_generation=ACCUMULATION,
                                    prm_mini_batch_size=PRM_MINI_BATCH, prm_micro_batch_size=2,
                                    train_on_failing=False, prm_update="before", prime_norm_scope="global",
                                    sync_gradients_each_micro_batch=sync, **extra)
            step = trainer.training_step

            def measured_step(*args, **kwargs):  # the policy's gradient held after each micro-batch
                loss = step(*args, **kwargs)
                seen["policy"] = max(seen["policy"], held_gradient_fraction(trainer.model))
                return loss

            logps = trainer._completion_logps

            def measured_logps(model, batch, rows=slice(None)):  # before each PRM micro-batch of the update
                if model is trainer.prm and torch.is_grad_enabled():
                    seen["prm"] = max(seen["prm"], held_gradient_fraction(trainer.prm))
                return logps(model, batch, rows)

            trainer.training_step = measured_step
            trainer._completion_logps = measured_logps
            trainer.train()
            results[sync] = {"held_policy": seen["policy"], "held_prm": seen["prm"], "gradient": seen["gradient"],
                             "policy": _full_state(trainer, trainer.model_wrapped),
                             "reduce_dtypes": {"policy": reduce_dtypes(trainer.model), "prm": reduce_dtypes(trainer.prm)},
                             "is_main": trainer.accelerator.is_main_process}
    return {"runs": results, "is_main": results[True]["is_main"]}


def run_resume(model_dir: str, processes: int, backend: str, output_dir: str) -> dict:
    """Train one step and checkpoint it, then resume from that checkpoint in a new trainer; on the
    main process, the PRM weights and its optimizer's step count as the resumed run starts, and
    the weights the checkpoint holds."""
    from transformers import TrainerCallback

    from primekit.rl.checkpoint import PRM_DIR, read_safetensors

    class AtStart(TrainerCallback):
        seen: dict = {}

        def on_train_begin(self, args, state, control, **kwargs):  # every process: a collective
            AtStart.seen = {"prm": _full_state(resumed, resumed.prm),
                            "optimizer_step": float(next(iter(resumed.prm_optimizer.state.values()))["step"])}

    settings = dict(oversample_factor=2, per_device_train_batch_size=GLOBAL_TRAINED // processes,
                    prm_mini_batch_size=PRM_MINI_BATCH, prm_micro_batch_size=2, prime_norm_scope="global",
                    save_strategy="steps", save_steps=1, **(FSDP2_SETTINGS if backend == "fsdp2" else {}))
    build_trainer(model_dir, PATTERNS, Path(output_dir), **settings).train()
    checkpoint = Path(output_dir) / "checkpoint-1"
    resumed = build_trainer(model_dir, PATTERNS, Path(output_dir), callbacks=[AtStart()], **{**settings, "max_steps": 2})
    resumed.train(resume_from_checkpoint=str(checkpoint))
    return {"saved": read_safetensors(checkpoint / PRM_DIR), **AtStart.seen,
            "is_main": resumed.accelerator.is_main_process}


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    backend = sys.argv[3] if len(sys.argv) > 3 else "ddp"
    torch.set_num_threads(1)
    if backend == "fsdp2":
        force_fsdp_on_cpu()
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's process count
    if len(sys.argv) > 4 and sys.argv[4] in ("accumulate", "accumulate-bf16"):
        result = run_accumulation(model_dir, processes, backend, bf16=sys.argv[4] == "accumulate-bf16")
    elif len(sys.argv) > 4:  # an output folder: the checkpoint / resume check
        result = run_resume(model_dir, processes, backend, sys.argv[4])
    else:
        result = run_step(model_dir, processes, backend)
    if result.pop("is_main"):
        torch.save(result, out)


if __name__ == "__main__":
    main()
