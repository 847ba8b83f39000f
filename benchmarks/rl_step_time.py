"""Step time of PRIME against plain TRL GRPO on the same policy and batch, with time per phase.

Both trainers run in this process, one after the other, on the SFT-warmed toy policy with the
same batch (64 prompts x 4 responses, no oversampling, so the generated and the trained batch
are equal) and the same seed. PRIME adds three passes of a model the policy's size over the
response tokens: the PRM reference's forward, the PRM's forward + backward (its update) and the
PRM's forward again (scoring with the updated PRM).

FLOP-ideal ratio, with N parameters and per response token 2N FLOPs for a forward and 4N for a
backward (generation counted as one decoding forward, 2N):
    GRPO  = generate 2N + policy fwd+bwd 6N                      =  8N
    PRIME = GRPO + PRM-ref fwd 2N + PRM fwd+bwd 6N + PRM fwd 2N  = 18N   -> ratio 2.25
(without generation: 16N / 6N = 2.67). On CPU with a 0.5M-parameter model, decoding is bound by
per-token overheads rather than FLOPs, so the measured ratio sits below the ideal one.

    flock /tmp/primekit-heavy.lock .venv/bin/python benchmarks/rl_step_time.py [--steps 8]
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
COMMAND = "flock /tmp/primekit-heavy.lock .venv/bin/python benchmarks/rl_step_time.py"
WARMUP_STEPS = 2
PHASES = ("generate_and_verify", "prm_reference", "prm_update", "prm_score", "advantages")
IDEAL_RATIO, IDEAL_RATIO_NO_GENERATION = 18 / 8, 16 / 6


def _settings(output_dir: str, steps: int) -> dict:
    return dict(output_dir=output_dir, use_cpu=True, bf16=False, gradient_checkpointing=False,
                per_device_train_batch_size=256, num_generations=4, max_completion_length=40, learning_rate=1e-4,
                lr_scheduler_type="constant", beta=0.0, loss_type="dapo", scale_rewards="none", seed=0,
                max_steps=WARMUP_STEPS + steps, logging_steps=1, save_strategy="no", report_to="none",
                disable_tqdm=True)


def _measured(log_history: list[dict], key: str) -> list[float]:
    values = [entry[key] for entry in log_history if key in entry]
    return values[WARMUP_STEPS:]


def run(trainer_kind: str, model_path: str, steps: int) -> dict[str, list[float]]:
    from trl import GRPOConfig, GRPOTrainer

    from primekit.models import load_tokenizer
    from primekit.rl.config import PrimeConfig
    from primekit.rl.data import load_prompt_dataset
    from primekit.rl.trainer import PrimeTrainer
    from primekit.rl.verifier import outcome_accuracy

    dataset = load_prompt_dataset("toy", limit=256 * (WARMUP_STEPS + steps))
    tokenizer = load_tokenizer(model_path)
    with tempfile.TemporaryDirectory() as scratch:
        if trainer_kind == "grpo":
            trainer = GRPOTrainer(model=model_path, reward_funcs=outcome_accuracy, args=GRPOConfig(**_settings(scratch, steps)),
                                  train_dataset=dataset, processing_class=tokenizer)
        else:
            config = PrimeConfig(**_settings(scratch, steps), oversample_factor=1, prm_learning_rate=1e-3)
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


def report(grpo: dict, prime: dict, steps: int) -> str:
    grpo_step, prime_step = _median(grpo["step_time"]), _median(prime["step_time"])
    prime_phases = {phase: _median(prime[phase]) for phase in PHASES}
    prime_other = prime_step - sum(v for v in prime_phases.values() if v == v)
    lines = [
        "## PRIME step time against TRL GRPO (toy policy, CPU)", "",
        f"`{COMMAND} --steps {steps}`. Same policy (toy, 0.53M parameters), same batch "
        "(64 prompts x 4 responses of up to 40 tokens, no oversampling), fp32 on CPU (torch threads: "
        f"{__import__('torch').get_num_threads()}); median over {steps} steps after {WARMUP_STEPS} warm-up steps, "
        "both trainers in one process, one after the other. `step_time` is TRL's own measure of a "
        "training step (generation, scoring and the policy update).", "",
        "| trainer | median step time (s) | ratio to GRPO | FLOP-ideal ratio |",
        "|---|---|---|---|",
        f"| TRL GRPOTrainer (outcome reward) | {grpo_step:.2f} | 1.00 | 1.00 |",
        f"| PrimeTrainer (PRM update before scoring) | {prime_step:.2f} | {prime_step / grpo_step:.2f} | "
        f"{IDEAL_RATIO:.2f} ({IDEAL_RATIO_NO_GENERATION:.2f} without generation) |", "",
        "PRIME time per phase (median seconds per step):", "",
        "| phase | seconds | share of the step |", "|---|---|---|",
    ]
    for phase, seconds in prime_phases.items():
        lines.append(f"| {phase.replace('_', ' ')} | {seconds:.3f} | {seconds / prime_step:.0%} |")
    prm_phases = sum(prime_phases[phase] for phase in ("prm_reference", "prm_update", "prm_score"))
    lines += [f"| policy update (rest of the step) | {prime_other:.3f} | {prime_other / prime_step:.0%} |", "",
              f"Without generation, (policy update + PRM phases) / policy update = {(prime_other + prm_phases) / prime_other:.2f}"
              f" (FLOP-ideal {IDEAL_RATIO_NO_GENERATION:.2f}); the PRM update alone costs "
              f"{prime_phases['prm_update'] / prime_other:.2f} policy updates (ideal 1.00).", "",
              "FLOP-ideal ratio: GRPO = generate (2N per token) + policy forward+backward (6N) = 8N; PRIME adds the "
              "PRM reference forward (2N), the PRM update's forward+backward (6N) and the scoring forward (2N): "
              "18N / 8N = 2.25. With a KL reference (beta > 0) at temperature 1 the PRM reference is shared with "
              "it and the ratio becomes 18N / 10N = 1.8.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="measured steps per trainer")
    args = parser.parse_args()
    from primekit import toy

    model_path = str(toy.policy_path())
    grpo = run("grpo", model_path, args.steps)
    prime = run("prime", model_path, args.steps)
    text = report(grpo, prime, args.steps)
    RESULTS.mkdir(exist_ok=True)
    from primekit.io import atomic_write_text

    atomic_write_text(RESULTS / "rl_step_time.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
