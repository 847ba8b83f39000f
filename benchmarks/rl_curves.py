"""Toy-world training curves: PRIME against outcome-only RLOO and PRIME with a frozen PRM.

Each run is ``prime-rl train`` with the toy recipe (64 prompts x 4 responses trained per step, 128
prompts sampled), changed by one flag per variant, for several seeds. Held-out accuracy (1000
unseen problems, one sample each at temperature 1, the same sampling seed at every evaluation) is
recorded every few steps against the number of responses generated. Sample efficiency is read off
the seed-averaged curves: how many responses each variant needs to reach the final accuracy of
RLOO (the paper reports 2.5x fewer for PRIME on its data), interpolated linearly between
evaluations. Runs are separate processes whose ``summary.json`` is kept, so an interrupted
benchmark resumes with the runs it has not finished.

    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_curves.py [--steps 40] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_curves.py"
FROZEN = "PRIME, frozen offline PRM"


def variants(offline_prm: Path, policy: str) -> dict[str, list[str]]:
    """One flag apart. A frozen PRM that starts as the policy equals its reference and gives
    q = 0, i.e. exactly RLOO (tests/test_rl_trainer.py checks this), so the frozen baseline uses
    the paper's setting instead: a PRM trained offline (`prime-prm train`, toy recipe) on the
    SFT policy's own graded samples, read against the SFT policy."""
    return {"PRIME": [],
            "RLOO (outcome only)": ["--process_reward_coef", "0"],
            FROZEN: ["--prm_update", "none", "--prm", str(offline_prm),
                     "--prm_ref", policy]}


def train_offline_prm(root: Path) -> Path:
    """The toy implicit PRM of `prime-prm train --config recipes/toy_prm.yaml`, trained once."""
    folder = root / "offline-prm"
    if not (folder / "config.json").is_file():
        print(f"[rl_curves] offline PRM -> {folder}", file=sys.stderr, flush=True)
        launcher = "import sys; from primekit.cli import dispatch; sys.exit(dispatch('prime-prm', sys.argv[1:]))"
        subprocess.run([sys.executable, "-c", launcher, "train", "--config", "recipes/toy_prm.yaml",
                        "--output_dir", str(folder), "--save_strategy", "no"], check=True, stdout=subprocess.DEVNULL)
    return folder


def run_dir(root: Path, variant: str, seed: int) -> Path:
    slug = "".join(c if c.isalnum() else "_" for c in variant.lower()).strip("_")
    return root / f"{slug}-seed{seed}"


def train(variant: str, flags: list[str], seed: int, steps: int, every: int, root: Path, extra: list[str]) -> dict:
    folder = run_dir(root, variant, seed)
    summary = folder / "summary.json"
    if not summary.is_file():
        command = [sys.executable, "-m", "primekit.rl.commands", "--output_dir", str(folder), "--seed", str(seed),
                   "--max_steps", str(steps), "--heldout_every_steps", str(every), "--report_to", "none",
                   "--save_strategy", "no", "--disable_tqdm", "true", *flags, *extra]
        print(f"[rl_curves] {variant}, seed {seed}: {' '.join(command[3:])}", file=sys.stderr, flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1"})
    return json.loads(summary.read_text())


def mean_curve(summaries: list[dict]) -> tuple[list[int], list[float], list[float]]:
    """Responses generated, mean held-out accuracy and its standard error over seeds."""
    points = [[(p["responses_generated"], p["accuracy"]) for p in s["heldout"]] for s in summaries]
    xs = [x for x, _ in points[0]]
    means, errors = [], []
    for index in range(len(xs)):
        values = [run[index][1] for run in points]
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        means.append(mean)
        errors.append(spread / math.sqrt(len(values)))
    return xs, means, errors


def responses_to_reach(xs: list[int], accuracy: list[float], target: float) -> float | None:
    """First crossing of ``target`` on the curve, interpolated linearly; None if never reached."""
    for (x0, y0), (x1, y1) in zip(zip(xs, accuracy), zip(xs[1:], accuracy[1:])):
        if y0 >= target:
            return float(x0)
        if y1 >= target:
            return x0 + (x1 - x0) * (target - y0) / (y1 - y0)
    return None


def plot(path: Path, curves: dict[str, tuple[list[int], list[float], list[float]]], steps: int, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    for name, (xs, means, errors) in curves.items():
        axis.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=name)
    axis.set_xlabel("responses generated")
    axis.set_ylabel("held-out accuracy (T=1, 1000 problems)")
    axis.set_title(f"Toy world: {steps} steps, mean ± s.e. over {seeds} seeds")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def report(curves: dict, summaries: dict[str, list[dict]], args: argparse.Namespace) -> str:
    names = list(curves)
    xs = curves[names[0]][0]
    flags = " ".join(args.extra)
    lines = ["## Toy-world training curves: PRIME vs RLOO vs frozen PRM", "",
             f"`{COMMAND} --steps {args.steps} --every {args.every} --seeds {' '.join(map(str, args.seeds))}"
             + (f" -- {flags}" if flags else "") + "`. Toy recipe (`recipes/toy_prime.yaml`): 64 prompts x 4 "
             "responses trained per step out of 128 x 4 sampled; RLOO is `--process_reward_coef 0`; the frozen "
             "PRM is `--prm_update none` with a PRM trained offline by `prime-prm train --config "
             "recipes/toy_prm.yaml` (CE on the SFT policy's graded samples), read against the SFT policy. Held-out accuracy on 1000 unseen problems, one sample each at T=1, "
             f"mean ± standard error over {len(args.seeds)} seeds (seed-to-seed spread; the binomial error of "
             "one evaluation is about ±0.016).", "",
             "| responses generated | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for index, x in enumerate(xs):
        cells = [f"{curves[n][1][index]:.3f} ± {curves[n][2][index]:.3f}" for n in names]
        lines.append(f"| {x} | " + " | ".join(cells) + " |")
    rloo = "RLOO (outcome only)"
    target = curves[rloo][1][-1]
    lines += ["", f"Responses needed to reach RLOO's final mean accuracy ({target:.3f}), from the seed-averaged "
              "curves (linear interpolation between evaluations):", "",
              "| variant | responses | RLOO / variant |", "|---|---|---|"]
    reference = responses_to_reach(*curves[rloo][:2], target)
    for name in names:
        needed = responses_to_reach(*curves[name][:2], target)
        ratio = f"{reference / needed:.2f}" if needed and reference else "n/a"
        lines.append(f"| {name} | {needed:.0f} | {ratio} |" if needed is not None else f"| {name} | not reached | n/a |")
    lines += ["", "Reading: the ± is the spread between training seeds only. Every evaluation uses the same "
              "1000 problems and sampling seed, so it does not include the evaluation's own binomial error "
              "(about ±0.016 for one policy); differences between variants smaller than that, and ratios "
              "read off such curves, are not evidence either way."]
    seconds = {n: sum(s["seconds"] for s in summaries[n]) / len(summaries[n]) for n in names}
    lines += ["", "Mean wall time per run (s, including held-out evaluations): "
              + ", ".join(f"{n} {seconds[n]:.0f}" for n in names) + ".", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10, help="held-out evaluation every N steps")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default="runs/rl_curves", help="folder for the individual runs (resumable)")
    parser.add_argument("extra", nargs="*", help="options passed to every run (after --)")
    args = parser.parse_args()
    root = Path(args.runs)
    from primekit import toy

    runs = variants(train_offline_prm(root), str(toy.policy_path()))
    summaries = {name: [train(name, flags, seed, args.steps, args.every, root, args.extra) for seed in args.seeds]
                 for name, flags in runs.items()}
    curves = {name: mean_curve(runs) for name, runs in summaries.items()}
    RESULTS.mkdir(exist_ok=True)
    plot(RESULTS / "rl_curves.png", curves, args.steps, len(args.seeds))
    text = report(curves, summaries, args) + "\n![training curves](rl_curves.png)\n"
    from primekit.io import atomic_write_text

    atomic_write_text(RESULTS / "rl_curves.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
