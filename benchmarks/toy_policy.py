"""Accuracy of the SFT-warmed toy policy on held-out toy problems, greedy and sampled at T=1.

RL needs groups whose accuracy is neither 0 nor 1, so the number that matters for PRIME is the
sampled (T=1) accuracy; greedy accuracy is reported beside it.

    .venv/bin/python benchmarks/toy_policy.py [--problems 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from primekit import toy
from primekit.generation import SamplingSpec, make_generator
from primekit.verifiers.math import grade
from primekit.io import atomic_write_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--problems", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    spec = toy.DEFAULT_WARMUP
    started = time.perf_counter()
    path = toy.policy_path()
    warmup_seconds = time.perf_counter() - started
    problems = toy.test_problems(args.problems)
    generator = make_generator(str(path), device="cpu", batch_size=250, show_progress=False)
    rows = []
    for label, temperature in [("greedy", 0.0), ("sampled, T=1", 1.0)]:
        spec_ = SamplingSpec(n=1, temperature=temperature, max_new_tokens=40, seed=0)
        completions = generator.generate([p.prompt for p in problems], spec_)
        texts = [c[0].text for c in completions]
        accuracy = sum(grade(t, p.answer) for t, p in zip(texts, problems)) / len(problems)
        skipped = sum(t.startswith("\\boxed") for t in texts) / len(problems)
        rows.append(f"| {label} | {accuracy:.3f} | {skipped:.3f} |")
    section = "\n".join([
        "## Toy policy after the SFT warm-up",
        "",
        f"`.venv/bin/python benchmarks/toy_policy.py --problems {args.problems}`. Warm-up: TRL "
        f"`SFTTrainer`, {spec.steps} steps of batch {spec.batch_size}, lr {spec.learning_rate}, "
        f"{spec.skip_rate:.0%} skipped-step targets, {spec.slip_rate:.0%} slipped-step targets "
        f"(`primekit/toy/sft.py`); "
        + (f"trained in {warmup_seconds:.0f} s in this run." if warmup_seconds > 5
           else "cached before this run (delete `.cache/primekit/toy` to time the warm-up)."),
        f"Held out: {args.problems} unseen toy problems, graded by `primekit.verifiers.math.grade`.",
        "",
        "| decoding | accuracy | fraction that skips the steps |",
        "|---|---|---|",
        *rows,
    ])
    out = Path(__file__).resolve().parent / "results" / "toy_policy.md"
    atomic_write_text(out, section + "\n")
    print(section)


if __name__ == "__main__":
    main()
