"""Step time of PRIME (PRM update ``after`` and ``before``) against plain TRL GRPO on the same
policy and batch, with time per phase, on the toy policy and on a Qwen-shaped one.

The three trainers run in this process, one after the other, on the SFT-warmed toy policy with the
same batch (64 prompts x 4 responses, no oversampling, so the generated and the trained batch
are equal) and the same seed; then again on a random Qwen-shaped policy (Qwen2's tokenizer and an
untied 151,936-column head, :mod:`primekit.toy.qwen_shaped`) with 4 prompts x 4 responses and
fewer measured steps (``--qwen_steps``): on CPU its 152k-column head makes a step take seconds. The
random policy never answers, so PRIME's accuracy and truncation filters would drop every group and
sample again: they are off for it, and every trainer trains on the batch it generated. PRIME adds passes of a model the policy's size over the response
tokens: the PRM reference's forward and the PRM's forward + backward (its update); ``before``
then scores the batch once more with the updated PRM, while ``after`` (the official run) rewards
each mini-batch with the log-ratios of its own training forward.

FLOP-ideal ratio, with N parameters and per response token 2N FLOPs for a forward and 4N for a
backward (generation counted as one decoding forward, 2N):
    GRPO           = generate 2N + policy fwd+bwd 6N                       =  8N
    PRIME (after)  = GRPO + PRM-ref fwd 2N + PRM fwd+bwd 6N                = 16N   -> ratio 2.00
    PRIME (before) = PRIME (after) + PRM scoring fwd 2N                    = 18N   -> ratio 2.25
(without generation: 14N / 6N = 2.33 and 16N / 6N = 2.67). On CPU with a 0.5M-parameter model,
decoding is bound by per-token overheads rather than FLOPs, so the measured ratios sit below the
ideal ones.

    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_step_time.py [--steps 8] [--qwen_steps 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_step_time.py"
WARMUP_STEPS = 2
PHASES = ("generate_and_verify", "prm_reference", "prm_update", "prm_score", "advantages")
#: FLOP-ideal step time relative to GRPO, with and without generation, per PRM update mode.
IDEAL_RATIOS = {"after": (16 / 8, 14 / 6), "before": (18 / 8, 16 / 6)}


def _settings(output_dir: str, steps: int, rows: int) -> dict:
    return dict(output_dir=output_dir, use_cpu=True, bf16=False, gradient_checkpointing=False,
                per_device_train_batch_size=rows, num_generations=4, max_completion_length=40, learning_rate=1e-4,
                lr_scheduler_type="constant", beta=0.0, loss_type="dapo", scale_rewards="none", seed=0,
                max_steps=WARMUP_STEPS + steps, logging_steps=1, save_strategy="no", report_to="none",
                disable_tqdm=True)


def _measured(log_history: list[dict], key: str) -> list[float]:
    values = [entry[key] for entry in log_history if key in entry]
    return values[WARMUP_STEPS:]


def run(trainer_kind: str, model_path: str, steps: int, rows: int, filters: bool) -> dict[str, list[float]]:
    """``trainer_kind``: "grpo", or a PRM update mode of PrimeTrainer ("after", "before"); ``rows``
    responses per step; ``filters``: PRIME's accuracy and truncation filters on."""
    from trl import GRPOConfig, GRPOTrainer

    from primekit.models import load_tokenizer
    from primekit.rl.config import PrimeConfig
    from primekit.rl.data import load_prompt_dataset
    from primekit.rl.trainer import PrimeTrainer
    from primekit.rl.verifier import outcome_accuracy

    dataset = load_prompt_dataset("toy", limit=rows * (WARMUP_STEPS + steps))
    tokenizer = load_tokenizer(model_path)
    with tempfile.TemporaryDirectory() as scratch:
        if trainer_kind == "grpo":
            trainer = GRPOTrainer(model=model_path, reward_funcs=outcome_accuracy,
                                  args=GRPOConfig(**_settings(scratch, steps, rows)),
                                  train_dataset=dataset, processing_class=tokenizer)
        else:
            config = PrimeConfig(**_settings(scratch, steps, rows), oversample_factor=1, prm_learning_rate=1e-3,
                                 prm_update=trainer_kind, filter_accuracy=filters, filter_truncated=filters)
            trainer = PrimeTrainer(model=model_path, args=config, train_dataset=dataset, processing_class=tokenizer)
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    history = trainer.state.log_history
    result = {"step_time": _measured(history, "step_time"), "wall": [wall]}
    for phase in PHASES:
        result[phase] = _measured(history, f"time/{phase}")
    return result


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(policies: dict[str, tuple[dict, dict[str, dict]]], steps: int, qwen_steps: int) -> str:
    lines = [
        "## PRIME step time against TRL GRPO (toy and Qwen-shaped policies, CPU)", "",
        f"`{COMMAND} --steps {steps} --qwen_steps {qwen_steps}`. Per policy, the three trainers on the same "
        "batch (no oversampling), in one process, one after the other: the toy policy (0.53M parameters, "
        f"64 prompts x 4 responses of up to 40 tokens, PRIME's filters on; median over {steps} steps) and "
        "a random Qwen-shaped policy (Qwen2's tokenizer, hidden 64, an untied 151,936-column head: 19.5M "
        "parameters, almost all in the embedding and the head; 4 prompts x 4 responses of 40 tokens; it "
        f"never answers, so PRIME's filters are off; median over {qwen_steps} steps). fp32 on CPU (torch threads: "
        f"{__import__('torch').get_num_threads()}); {WARMUP_STEPS} warm-up steps first. "
        "`step_time` is TRL's own measure of a training step (generation, scoring and the policy update). "
        "No other torch job ran at the same time (the command holds the machine's CPU lock).", "",
        "| policy | trainer | median step time (s) | ratio to GRPO | FLOP-ideal ratio |",
        "|---|---|---|---|---|",
    ]
    for name, (grpo, primes) in policies.items():
        lines += _ratio_rows(name, grpo, primes)
    for name, (grpo, primes) in policies.items():
        lines += _phase_rows(name, primes)
    lines += ["", "FLOP-ideal ratio: GRPO = generate (2N per token) + policy forward+backward (6N) = 8N; PRIME adds the "
              "PRM reference forward (2N) and the PRM update's forward+backward (6N): 16N / 8N = 2.0 with `after`, "
              "which rewards each mini-batch with its training forward; `before` scores the batch again with the "
              "updated PRM (2N more): 18N / 8N = 2.25.", ""]
    return "\n".join(lines)


def _ratio_rows(name: str, grpo: dict, primes: dict[str, dict]) -> list[str]:
    grpo_step = _median(grpo["step_time"])
    lines = [f"| {name} | TRL GRPOTrainer (outcome reward) | {grpo_step:.2f} | 1.00 | 1.00 |"]
    for mode, prime in primes.items():
        step = _median(prime["step_time"])
        ideal, ideal_no_generation = IDEAL_RATIOS[mode]
        lines.append(f"| {name} | PrimeTrainer (PRM update {mode}) | {step:.2f} | {step / grpo_step:.2f} | "
                     f"{ideal:.2f} ({ideal_no_generation:.2f} without generation) |")
    return lines


def _phase_rows(name: str, primes: dict[str, dict]) -> list[str]:
    lines = ["", f"PRIME time per phase, {name} policy (median seconds per step):", "",
              "| phase | " + " | ".join(f"{mode}: seconds (share)" for mode in primes) + " |",
              "|---|" + "---|" * len(primes)]
    phases = {mode: {phase: _median(prime[phase]) for phase in PHASES} for mode, prime in primes.items()}
    steps_of = {mode: _median(prime["step_time"]) for mode, prime in primes.items()}
    rest = {mode: steps_of[mode] - sum(v for v in phases[mode].values() if v == v) for mode in primes}
    for phase in PHASES:
        cells = [f"{phases[m][phase]:.3f} ({phases[m][phase] / steps_of[m]:.0%})" if phases[m][phase] == phases[m][phase]
                 else "not run" for m in primes]
        lines.append(f"| {phase.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines.append("| policy update (rest of the step) | " +
                 " | ".join(f"{rest[m]:.3f} ({rest[m] / steps_of[m]:.0%})" for m in primes) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="measured steps per trainer, toy policy")
    parser.add_argument("--qwen_steps", type=int, default=3, help="measured steps per trainer, Qwen-shaped policy")
    args = parser.parse_args()
    from primekit import toy
    from primekit.toy import qwen_shaped

    policies = {}
    for name, model_path, steps, rows, filters in (
            ("toy", str(toy.policy_path()), args.steps, 256, True),
            ("Qwen-shaped", str(qwen_shaped.model_path()), args.qwen_steps, 16, False)):
        grpo = run("grpo", model_path, steps, rows, filters)
        policies[name] = (grpo, {mode: run(mode, model_path, steps, rows, filters) for mode in IDEAL_RATIOS})
    text = report(policies, args.steps, args.qwen_steps)
    RESULTS.mkdir(exist_ok=True)
    from primekit.io import atomic_write_text

    atomic_write_text(RESULTS / "rl_step_time.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
