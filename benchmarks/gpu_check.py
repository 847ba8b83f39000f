"""One-GPU check of a PRIME run as the 7B recipe runs it, planned against measured, per phase.

On one CUDA GPU (``--device cuda``, a few minutes): a Qwen2-shaped model of about 0.5B parameters
(random weights, Qwen2's real 151,936-token vocabulary, an untied LM head) is the policy, the PRM and
the PRM's reference; FSDP2 in one process (bf16 parameters, fp32 reduce: PrimeTrainer's mixed
precision), vLLM colocated with sleep mode, two PRIME steps with 4 micro-batches per optimizer step.
For each phase it prints ``prime-rl plan``'s number next to ``torch.cuda.max_memory_allocated`` and
``max_memory_reserved`` over that phase, and the step time of PRIME against GRPO (the same run with
``process_reward_coef 0``: no PRM).

``--device cpu`` is the smoke mode the test suite runs: the same code path on a small Qwen2 shape
(hidden 64, 2 layers, the same vocabulary and untied head), one process without FSDP or vLLM,
transformers' ``generate``; it prints the plan and the step times, and says that memory is not
measured (the CPU has no allocator statistics; ``benchmarks/memory_plan.py`` measures CPU peaks).

    python benchmarks/gpu_check.py --device cuda
    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/gpu_check.py --device cpu
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TOKENIZER = REPO.parent / "shared" / "data" / "tokenizers" / "qwen2"
GIB = 2**30
VOCAB = 151_936
#: about Qwen2.5-0.5B's layers, with an untied head
CUDA_SHAPE = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                  num_key_value_heads=2)
CPU_SHAPE = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
ACCUMULATION = 4


def save_model(folder: Path, shape: dict, tokenizer) -> str:
    """A random Qwen2 of ``shape`` with Qwen2's vocabulary and an untied head, saved with the tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, max_position_embeddings=4096, tie_word_embeddings=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **shape)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


class PhaseMemory:
    """Peak CUDA memory (allocated, reserved) over each call of the wrapped trainer methods."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.peaks: dict[str, tuple[float, float]] = {}

    def wrap(self, owner, method: str, phase: str) -> None:
        import torch

        inner = getattr(owner, method)

        def measured(*args, **kwargs):
            if self.cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            result = inner(*args, **kwargs)
            if self.cuda:
                torch.cuda.synchronize()
                allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
                before = self.peaks.get(phase, (0.0, 0.0))
                self.peaks[phase] = (max(before[0], allocated), max(before[1], reserved))
            return result

        setattr(owner, method, measured)

    def optimizer_callback(self):
        """A TrainerCallback measuring the policy's optimizer step (the optimizer exists only once
        the model is sharded, inside ``train``)."""
        import torch
        from transformers import TrainerCallback

        phases = self

        class PolicyStep(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, **kwargs):
                if phases.cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()

            def on_optimizer_step(self, args, state, control, **kwargs):
                if phases.cuda:
                    torch.cuda.synchronize()
                    before = phases.peaks.get("policy step", (0.0, 0.0))
                    phases.peaks["policy step"] = (max(before[0], torch.cuda.max_memory_allocated()),
                                                   max(before[1], torch.cuda.max_memory_reserved()))

        return PolicyStep()


def run(model_dir: str, device: str, prime: bool, output: Path) -> tuple[float, dict, object]:
    """Two PRIME (or GRPO) steps; returns seconds per step, the peaks by phase and the config."""
    from primekit import toy
    from primekit.models import load_tokenizer
    from primekit.rl.config import PrimeConfig
    from primekit.rl.data import toy_dataset
    from primekit.rl.trainer import PrimeTrainer

    cuda = device == "cuda"
    settings = dict(output_dir=str(output), report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
                    max_steps=2, per_device_train_batch_size=4 if cuda else 2, gradient_accumulation_steps=ACCUMULATION,
                    steps_per_generation=ACCUMULATION, num_generations=4, oversample_factor=1,
                    max_completion_length=1024 if cuda else 8, learning_rate=1e-6, prm_learning_rate=1e-6,
                    prm_micro_batch_size=4 if cuda else 2, gradient_checkpointing=cuda, seed=0,
                    process_reward_coef=5.0 if prime else 0.0, model_init_kwargs={"dtype": "float32"})
    if cuda:
        settings.update(bf16=True, use_vllm=True, vllm_mode="colocate", vllm_enable_sleep_mode=True,
                        vllm_gpu_memory_utilization=0.3, fsdp="full_shard",
                        fsdp_config={"fsdp_version": 2, "transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"],
                                     "reshard_after_forward": True})
    else:
        settings.update(use_cpu=True, bf16=False)
    config = PrimeConfig(**settings)
    dataset = toy_dataset(toy.make_problems(config.generation_batch_size // config.num_generations * 3, seed=5))
    phases = PhaseMemory(cuda)
    trainer = PrimeTrainer(model=model_dir, args=config, train_dataset=dataset, processing_class=load_tokenizer(model_dir),
                           callbacks=[phases.optimizer_callback()])
    phases.wrap(trainer, "_generate", "generation")
    if trainer.prm is not None:
        phases.wrap(trainer, "_update_prm", "PRM update + step")
    phases.wrap(trainer, "training_step", "policy update")
    started = time.perf_counter()
    trainer.train()
    return (time.perf_counter() - started) / config.max_steps, phases.peaks, config


def planned(config, model_dir: str, device: str) -> dict[str, float]:
    from primekit.rl.plan.launcher import backend_from_name
    from primekit.rl.plan.memory import plan_run

    cuda = device == "cuda"
    backend = backend_from_name("fsdp2" if cuda else "ddp", gpus=1)
    capacity = 80 * GIB
    if cuda:
        import torch

        capacity = float(torch.cuda.get_device_properties(0).total_memory)
    plan = plan_run(config, model_dir, backend, capacity, prompt_tokens=32, on_gpu=cuda)
    return {phase: plan.phase_total(phase) for phase in plan.phases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda: the 0.5B check on one GPU; cpu: the small smoke run of the same path")
    args = parser.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA GPU here; run --device cpu for the smoke check", file=sys.stderr)
            return 2
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": os.environ.get("MASTER_PORT", "29555")})
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = save_model(Path(scratch) / "model", CUDA_SHAPE if args.device == "cuda" else CPU_SHAPE, tokenizer)
        prime_seconds, peaks, config = run(model_dir, args.device, prime=True, output=Path(scratch) / "prime")
        grpo_seconds, _, _ = run(model_dir, args.device, prime=False, output=Path(scratch) / "grpo")
        plan = planned(config, model_dir, args.device)
    print(f"gpu_check --device {args.device}: Qwen2 shape {CUDA_SHAPE if args.device == 'cuda' else CPU_SHAPE}, "
          f"vocabulary {VOCAB}, untied head, {ACCUMULATION} micro-batches per optimizer step")
    print("| phase | planned GiB | max allocated GiB | max reserved GiB |")
    print("|---|---|---|---|")
    for phase, size in plan.items():
        print(f"| {phase} | {size / GIB:.2f} | not measured | not measured |" if args.device == "cpu" else
              f"| {phase} | {size / GIB:.2f} | | |")
    for phase, (allocated, reserved) in peaks.items():
        print(f"| measured: {phase} | | {allocated / GIB:.2f} | {reserved / GIB:.2f} |")
    if args.device == "cpu":
        print("memory: not measured on CPU (no allocator statistics); benchmarks/memory_plan.py measures CPU peaks")
    print(f"PRIME/GRPO step time: {prime_seconds:.2f} s / {grpo_seconds:.2f} s = {prime_seconds / grpo_seconds:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
