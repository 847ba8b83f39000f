"""The PRIME paper's ablation at toy scale: does the online implicit PRM make RL more sample-efficient?

Arms, each ``--seeds`` times with the same number of generated responses (128 prompts x 4 sampled
per step) and one policy update per step:

* ``prime``: PRIME, online PRM (``prime-rl train`` with the toy recipe and the PRM settings below),
  PRM update ``before`` (the toy recipe's: the PRM fits this batch, then scores it);
* ``after``: the same with ``--prm_update after`` (the 7B recipe's: the batch is scored by the PRM
  as it was, then the PRM is updated on it);
* ``rloo``: outcome-only RLOO (``--process_reward_coef 0``);
* ``frozen_sft``: PRIME with a PRM frozen at the SFT policy (``--prm_update none``): PRM = reference
  gives q = 0, so this must match RLOO (a check of the pipeline, not an experiment);
* ``frozen_offline``: PRIME with a PRM trained offline (``prime-prm train``, CE on 16k graded samples
  of the SFT policy) and frozen;
* ``grpo``: TRL's own ``GRPOTrainer`` (its defaults; trains on all 512 responses), for scale.

Held-out accuracy: ``--heldout`` unseen problems (no training prompt among them), one sample each at T=1 (the same sampling seed at
every evaluation and in every run), every ``--every`` steps. The PRM probe reads every checkpoint
of the ``prime`` runs: 4 samples at T=1 of the checkpoint policy on ``--probe_problems`` held-out
problems, scored by the online PRM, the frozen offline PRM and the reference policy's own
log-likelihood (AUC, within-group pairwise accuracy, and slip localisation on one-slip responses,
:mod:`primekit.prm.localisation`).

Every run is its own process whose ``summary.json`` is kept, so the command resumes where it was
stopped; ``--arms`` / ``--seeds`` / ``--no_report`` run one chunk at a time. Each run also keeps
``run.json`` (the commit it was made at, its command and settings); the report names the commits
of the runs it reads and copies each run's held-out curve to ``benchmarks/results/rl_ablation/``.
Runs of one seed share their prompt order and sampling seed in every PRIME-trainer arm (``--seed``;
GRPO, TRL's own trainer, samples its batches its own way), so the report compares arms by paired
per-seed differences with Student-t intervals
(:func:`primekit.rl.sample_efficiency.paired_comparison`). ``--sweep`` runs the
PRM learning-rate x beta sweep (one seed, PRIME only) that chose the PRM settings; ``--tag NAME``
runs a search setting (options after ``--`` go to every PRIME-trainer run) that the report lists
beside every other setting and world tried.

    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_ablation.py            # all arms and seeds, resumable
    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_ablation.py --arms prime --seeds 3 --no_report
    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_ablation.py --sweep --steps 24 --no_report
    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_ablation.py --tag prm-coef20 \
        --arms prime frozen_offline --seeds 0 --no_report -- --process_reward_coef 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from primekit import toy
from primekit.io import atomic_write_json, atomic_write_jsonl, atomic_write_text
from primekit.rl.sample_efficiency import PAIRED_METHOD, bootstrap_band, efficiency_ratio, paired_comparison

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/rl_ablation.py"
SECTION = "rl_ablation"
PROBE_SAMPLES = 4  # responses per probe problem (a group, for the pairwise accuracy)
PRM_MINI_BATCH = 64  # 4 PRM optimizer steps per RL step (256 trained responses), as in the official run
OFFLINE_PRM_PROBLEMS = 4000  # x 4 samples: the size of the toy recipe's offline PRM data
EXTRAPOLATE = 0.25  # a curve may be extended along its last segment by a quarter of the run (sample_efficiency)

#: PRM settings of the ``prime`` arm, chosen by ``--sweep`` (see the report's sweep table).
PRM_SETTINGS = {"prm_learning_rate": 1e-3, "prm_beta": 0.5}
SWEEP = [{"prm_learning_rate": lr, "prm_beta": beta} for lr in (3e-4, 1e-3, 3e-3) for beta in (0.05, 0.5)]


@dataclass(frozen=True)
class Arm:
    name: str
    flags: tuple[str, ...] = ()


ARMS = {
    "prime": Arm("PRIME (online PRM)"),
    "after": Arm("PRIME (online PRM, update after)", ("--prm_update", "after")),
    "rloo": Arm("RLOO (outcome only)", ("--process_reward_coef", "0")),
    "frozen_sft": Arm("PRIME, PRM frozen at SFT (= RLOO)", ("--prm_update", "none")),
    "frozen_offline": Arm("PRIME, frozen offline PRM", ("--prm_update", "none")),
    "grpo": Arm("GRPO (TRL)"),
}


# ------------------------------------------------------------------------------------------------
# the world: policy, data files, offline PRM


@dataclass(frozen=True)
class World:
    name: str
    root: Path
    policy: str
    max_new_tokens: int

    @property
    def train_file(self) -> Path:
        return self.root / "data" / "train.jsonl"

    @property
    def heldout_file(self) -> Path:
        return self.root / "data" / "heldout.jsonl"

    @property
    def offline_prm(self) -> Path:
        return self.root / "offline-prm"


def prepare_world(name: str, runs: Path, heldout: int) -> World:
    """The SFT policy of toy world ``name`` (cached), its train / held-out prompt files."""
    from primekit.paths import cache_dir
    from primekit.toy.task import max_sequence_tokens

    spec = toy.WORLDS[name]
    root = runs / name
    started = time.perf_counter()
    cached = (cache_dir() / "toy" / f"policy-{spec.key()}" / "warmup_spec.json").is_file()
    world = World(name, root, str(toy.policy_path(spec)), max_sequence_tokens(spec.task))
    if not cached:
        record_time(world, "sft_warmup", time.perf_counter() - started)
    for path, problems in ((world.train_file, toy.train_problems(spec)),
                           (world.heldout_file, toy.test_problems(heldout, spec))):
        if not path.is_file() or sum(1 for _ in path.open()) != len(problems):
            atomic_write_jsonl(path, [{"prompt": p.prompt, "answer": p.answer} for p in problems])
    return world


def describe_policy(world: World) -> None:
    """The SFT policy on the held-out problems: greedy and T=1 accuracy, the latter by chain length
    (written once per world, for the report)."""
    if (world.root / "policy.json").is_file():
        return
    from primekit.models import load_causal_lm, load_tokenizer
    from primekit.toy.task import parse_expression, problem_expression

    problems = [json.loads(line) for line in world.heldout_file.open()]
    prompts, answers = [p["prompt"] for p in problems], [p["answer"] for p in problems]
    model, tokenizer = load_causal_lm(world.policy, dtype="float32"), load_tokenizer(world.policy)
    _, greedy = sample_and_grade(model, tokenizer, prompts, answers, 1, world.max_new_tokens, 0, temperature=0.0)
    _, sampled = sample_and_grade(model, tokenizer, prompts, answers, 1, world.max_new_tokens, 0)
    by_steps: dict[int, list[int]] = {}
    for prompt, grade in zip(prompts, sampled):
        by_steps.setdefault(len(parse_expression(problem_expression(prompt))[1]), []).append(grade[0])
    atomic_write_json(world.root / "policy.json", {
        "problems": len(problems), "greedy": float(np.mean(greedy)), "sampled": float(np.mean(sampled)),
        "sampled_by_steps": {steps: float(np.mean(grades)) for steps, grades in sorted(by_steps.items())}})


def sample_and_grade(model, tokenizer, prompts: list[str], answers: list[str], n: int, max_new_tokens: int,
                     seed: int, temperature: float = 1.0) -> tuple[list[list[str]], list[list[int]]]:
    """``n`` samples per prompt (T=1 unless told) and their 0/1 grades."""
    from primekit.generation import SamplingSpec, TransformersGenerator
    from primekit.verifiers.math import grade_many

    generator = TransformersGenerator(model, tokenizer, batch_size=512, show_progress=False)
    groups = generator.generate(prompts, SamplingSpec(n=n, temperature=temperature, max_new_tokens=max_new_tokens,
                                                      seed=seed))
    texts = [[sample.text for sample in group] for group in groups]
    flat = grade_many([(text, answer) for group, answer in zip(texts, answers) for text in group])
    return texts, [[int(g) for g in flat[i * n:(i + 1) * n]] for i in range(len(prompts))]


def train_offline_prm(world: World) -> Path:
    """``prime-prm train`` (the toy recipe's settings) on the SFT policy's own graded samples."""
    if (world.offline_prm / "config.json").is_file():
        return world.offline_prm
    from primekit.models import load_causal_lm, load_tokenizer

    data = world.root / "data" / "offline-prm.jsonl"
    if not data.is_file():
        problems = [json.loads(line) for line in world.train_file.open()][:OFFLINE_PRM_PROBLEMS]
        texts, labels = sample_and_grade(load_causal_lm(world.policy, dtype="float32"), load_tokenizer(world.policy),
                                         [p["prompt"] for p in problems], [p["answer"] for p in problems],
                                         4, world.max_new_tokens, seed=7)
        atomic_write_jsonl(data, [{"prompt": p["prompt"], "completion": t, "label": l}
                                  for p, group, grades in zip(problems, texts, labels)
                                  for t, l in zip(group, grades) if t.strip()])
    log(f"offline PRM -> {world.offline_prm}")
    started = time.perf_counter()
    launcher = "import sys; from primekit.cli import dispatch; sys.exit(dispatch('prime-prm', sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", launcher, "train", "--config", "recipes/toy_prm.yaml",
                    "--model", world.policy, "--train_file", str(data), "--eval_fraction", "0.05",
                    "--output_dir", str(world.offline_prm), "--save_strategy", "no", "--disable_tqdm", "true"],
                   check=True, stdout=subprocess.DEVNULL, env=_env())
    record_time(world, "offline_prm", time.perf_counter() - started)
    return world.offline_prm


def record_time(world: World, what: str, seconds: float) -> None:
    """Set-up work done once per world (SFT warm-up, offline PRM), for the report's wall time."""
    path = world.root / "timings.json"
    timings = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {**timings, what: round(seconds, 1)})


# ------------------------------------------------------------------------------------------------
# runs


def _env() -> dict[str, str]:
    return {**os.environ, "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}


def log(message: str) -> None:
    print(f"[rl_ablation] {message}", file=sys.stderr, flush=True)


def prime_command(arm: str, world: World, folder: Path, seed: int, args: argparse.Namespace,
                  prm_settings: dict[str, float]) -> list[str]:
    """``prime-rl train`` (toy recipe) for one arm; the PRIME arms checkpoint for the PRM probe."""
    probe = arm == "prime"
    command = [sys.executable, "-m", "primekit.rl.commands", "--model", world.policy,
               "--dataset", str(world.train_file), "--heldout", str(world.heldout_file),
               "--heldout_size", str(args.heldout), "--heldout_every_steps", str(args.every),
               "--max_steps", str(args.steps), "--seed", str(seed), "--output_dir", str(folder),
               "--max_completion_length", str(world.max_new_tokens), "--report_to", "none",
               "--disable_tqdm", "true", "--logging_steps", "1",
               "--save_strategy", "steps" if probe else "no", "--save_steps", str(args.every * args.probe_every),
               "--save_only_model", "true", *ARMS[arm].flags]
    if arm in ("prime", "after"):  # a frozen PRM has no learning rate, and batch_norm makes beta irrelevant to it
        command += ["--prm_mini_batch_size", str(PRM_MINI_BATCH)]
        command += [item for key, value in prm_settings.items() for item in (f"--{key}", str(value))]
    if arm == "frozen_offline":
        command += ["--prm", str(train_offline_prm(world)),
                    "--prm_ref", world.policy]
    return command + list(args.extra)


def run(arm: str, world: World, folder: Path, seed: int, args: argparse.Namespace,
        prm_settings: dict[str, float]) -> dict:
    """One training run (skipped when its summary exists), then the PRM probe of its checkpoints."""
    summary = folder / "summary.json"
    if not summary.is_file():
        if arm == "grpo":
            command = [sys.executable, __file__, "--grpo_worker", json.dumps(
                {"policy": world.policy, "train": str(world.train_file), "heldout": str(world.heldout_file),
                 "heldout_size": args.heldout, "every": args.every, "steps": args.steps, "seed": seed,
                 "output_dir": str(folder), "max_new_tokens": world.max_new_tokens})]
        else:
            command = prime_command(arm, world, folder, seed, args, prm_settings)
        log(f"{arm} seed {seed} -> {folder}")
        shutil.rmtree(folder, ignore_errors=True)  # a killed run restarts from scratch
        atomic_write_json(folder / "run.json", {"commit": commit(), "arm": arm, "seed": seed, "world": world.name,
                                                "command": _portable(command)})
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=_env())
    if arm == "prime" and not (folder / "probe.json").is_file():
        probe_run(world, folder, args)
    return json.loads(summary.read_text())


def commit() -> str:
    """The commit the code was at (``+dirty`` when tracked files had changes)."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=root).stdout
    return head.strip() + ("+dirty" if dirty.strip() else "")


def _portable(command: list[str]) -> list[str]:
    """A run's command with the interpreter and this machine's folders left out (the cache folder
    written as ``$PRIMEKIT_CACHE``)."""
    from primekit.paths import cache_dir

    root = str(Path(__file__).resolve().parents[1]) + "/"
    cache = str(cache_dir())
    return ["python", *[part.replace(cache, "$PRIMEKIT_CACHE").replace(root, "") for part in command[1:]]]


def grpo_worker(spec: dict) -> None:
    """TRL's GRPOTrainer with its defaults, on the same batches and held-out evaluations."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from primekit.models import load_tokenizer
    from primekit.rl.data import load_prompt_dataset
    from primekit.rl.heldout import HeldOutAccuracy
    from primekit.rl.verifier import outcome_accuracy

    torch.set_num_threads(2)
    tokenizer = load_tokenizer(spec["policy"])
    heldout = load_prompt_dataset(spec["heldout"], limit=spec["heldout_size"])
    config = GRPOConfig(output_dir=spec["output_dir"], use_cpu=True, bf16=False, gradient_checkpointing=False,
                        per_device_train_batch_size=512, num_generations=4, temperature=1.0,
                        max_completion_length=spec["max_new_tokens"], learning_rate=1e-4,
                        lr_scheduler_type="constant", warmup_steps=0, beta=0.0, max_steps=spec["steps"],
                        seed=spec["seed"], report_to="none", save_strategy="no", logging_steps=1,
                        disable_tqdm=True)
    callback = HeldOutAccuracy(list(heldout["prompt"]), list(heldout["answer"]), tokenizer, temperature=1.0,
                               max_new_tokens=spec["max_new_tokens"], responses_per_step=config.generation_batch_size,
                               every_steps=spec["every"])
    trainer = GRPOTrainer(model=spec["policy"], reward_funcs=outcome_accuracy, args=config,
                          train_dataset=load_prompt_dataset(spec["train"]), processing_class=tokenizer,
                          callbacks=[callback])
    started = time.perf_counter()
    trainer.train()
    atomic_write_json(Path(spec["output_dir"]) / "summary.json",
                      {"variant": "GRPO (TRL)", "steps": trainer.state.global_step,
                       "seconds": round(time.perf_counter() - started, 1),
                       "heldout": [point.__dict__ for point in callback.history]})


# ------------------------------------------------------------------------------------------------
# PRM probe: what the PRMs say about the current policy's held-out samples


def token_logprobs(model, encoded, pad_id: int, batch_size: int = 256) -> list[np.ndarray]:
    """log pi(y_t | x, y_<t) of every response token (the appended EOS included)."""
    import torch

    from primekit.prm.data import join_right_padded
    from primekit.prm.implicit import response_logprobs

    result = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        batch = join_right_padded([e.prompt_ids for e in chunk], [e.response_ids for e in chunk], pad_id)
        with torch.no_grad():
            logps = response_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        for row, item in enumerate(chunk):
            begin = len(item.prompt_ids)
            result.append(logps[row, begin:begin + len(item.response_ids)].float().numpy())
    return result


def read_out(scores: list[np.ndarray], steps: list[list[int]], labels: np.ndarray,
             slips: list[int | None], is_prm: bool) -> dict:
    """Separation (AUC of the sequence and min-step scores, pairwise accuracy within groups, sign
    accuracy for a PRM) and slip localisation of one scorer's per-token scores."""
    import torch
    from transformers import EvalPrediction

    from primekit.prm.losses import pairwise_accuracy
    from primekit.prm.trainer import implicit_reward_metrics
    from primekit.prm.localisation import SlipCase, localisation

    sequence = np.array([s.sum() for s in scores])
    min_step = np.array([min(np.bincount(st, weights=s)) for s, st in zip(scores, steps)])
    metrics = implicit_reward_metrics(EvalPrediction(predictions=sequence, label_ids=labels))
    located = localisation(SlipCase(slip, s.tolist(), st) for s, st, slip in zip(scores, steps, slips)
                           if slip is not None)
    return {"auc": metrics["auc"],
            "auc_min_step": implicit_reward_metrics(EvalPrediction(predictions=min_step, label_ids=labels))["auc"],
            "pairwise_accuracy": float(pairwise_accuracy(torch.from_numpy(sequence), torch.from_numpy(labels),
                                                         PROBE_SAMPLES)),
            "sign_accuracy": metrics["reward_accuracy"] if is_prm else None,
            "advantage_correlation": advantage_correlation(scores, labels) if is_prm else None,
            "one_slip_responses": located.responses, "step_localisation": located.step_rate,
            "token_localisation": located.token_rate, "step_chance": located.step_chance,
            "token_chance": located.token_chance}


def advantage_correlation(q_rows: list[np.ndarray], labels: np.ndarray) -> float:
    """How much the PRM changes what the policy is pushed towards: the correlation, over the tokens
    of the groups inside the accuracy band [0.2, 0.8], between PRIME's per-token advantages with
    these log-ratios (official coefficients 5 / 5, token rewards, batch_norm, which makes beta
    irrelevant) and outcome-only RLOO's. 1 means the process rewards change nothing."""
    import torch

    from primekit.rl.advantages import implicit_token_rewards, normalize_token_rewards, prime_advantages

    length = max(len(row) for row in q_rows)
    q = torch.zeros(len(q_rows), length, dtype=torch.float64)
    mask = torch.zeros_like(q)
    for index, row in enumerate(q_rows):
        q[index, :len(row)] = torch.from_numpy(row.astype(np.float64))
        mask[index, :len(row)] = 1
    accuracy = torch.from_numpy(labels)
    group_accuracy = accuracy.view(-1, PROBE_SAMPLES).mean(1)
    kept = ((group_accuracy >= 0.2) & (group_accuracy <= 0.8)).repeat_interleave(PROBE_SAMPLES)
    if not kept.any():
        return float("nan")
    q, mask, accuracy = q[kept], mask[kept], accuracy[kept]
    process = normalize_token_rewards(implicit_token_rewards(q, mask, 1.0), mask)
    prime, _ = prime_advantages(process, accuracy, mask, PROBE_SAMPLES, process_coef=5.0, outcome_coef=5.0)
    rloo, _ = prime_advantages(torch.zeros_like(process), accuracy, mask, PROBE_SAMPLES, process_coef=0.0)
    valid = mask.bool()
    return float(np.corrcoef(prime[valid].numpy(), rloo[valid].numpy())[0, 1])


def line_spans(text: str) -> tuple[tuple[int, int], ...]:
    """The character spans of a toy response's lines (its steps); an empty response is one step."""
    from primekit.prm.reading import split_steps

    return split_steps(text, "newline").spans if text.strip() else ((0, len(text)),)


def probe(policy: str, online_prm: str | None, world: World, problems: list[dict], seed: int) -> dict:
    """Sample the policy, then read the samples with each scorer (see the module docstring)."""
    import torch

    from primekit.models import load_causal_lm, load_tokenizer
    from primekit.prm.data import encode_responses
    from primekit.prm.reading import token_steps
    from primekit.prm.localisation import single_slip_step

    torch.set_num_threads(2)
    tokenizer = load_tokenizer(world.policy)
    prompts, answers = [p["prompt"] for p in problems], [p["answer"] for p in problems]
    texts, grades = sample_and_grade(load_causal_lm(policy, dtype="float32"), tokenizer, prompts, answers,
                                     PROBE_SAMPLES, world.max_new_tokens, seed)
    flat_prompts = [p for p in prompts for _ in range(PROBE_SAMPLES)]
    flat_texts = [t for group in texts for t in group]
    labels = np.array([g for group in grades for g in group], dtype=np.float64)
    encoded = encode_responses(tokenizer, flat_prompts, flat_texts, append_eos=True)
    steps = [token_steps(item.offsets, line_spans(text)) for item, text in zip(encoded, flat_texts)]
    slips = [single_slip_step(p, t) for p, t in zip(flat_prompts, flat_texts)]
    logps = {name: token_logprobs(load_causal_lm(path, dtype="float32"), encoded, tokenizer.pad_token_id)
             for name, path in (("ref", world.policy), ("offline", str(world.offline_prm)),
                                ("online", online_prm)) if path is not None}
    scorers = {"reference log-likelihood": (logps["ref"], False),
               "frozen offline PRM": ([o - r for o, r in zip(logps["offline"], logps["ref"])], True)}
    if "online" in logps:
        scorers["online PRM"] = ([o - r for o, r in zip(logps["online"], logps["ref"])], True)
    return {"responses": len(flat_texts), "accuracy": float(labels.mean()),
            "one_slip_fraction": sum(s is not None for s in slips) / len(slips),
            "scorers": {name: read_out(scores, steps, labels, slips, is_prm)
                        for name, (scores, is_prm) in scorers.items()}}


def probe_run(world: World, folder: Path, args: argparse.Namespace) -> None:
    """Probe the start (SFT policy, online PRM = reference) and every checkpoint, then drop them."""
    train_offline_prm(world)
    started = time.perf_counter()
    problems = [json.loads(line) for line in world.heldout_file.open()][:args.probe_problems]
    summary = json.loads((folder / "summary.json").read_text())
    per_step = summary["heldout"][-1]["responses_generated"] // summary["heldout"][-1]["step"]
    points = [{"step": 0, "responses_generated": 0, **probe(world.policy, None, world, problems, seed=99)}]
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for checkpoint in checkpoints:
        step = int(checkpoint.name.split("-")[1])
        log(f"probe {folder.name} step {step}")
        points.append({"step": step, "responses_generated": step * per_step,
                       **probe(str(checkpoint), str(checkpoint / "prm"), world, problems, seed=99)})
    for point in points:
        point["probe_seconds"] = round((time.perf_counter() - started) / len(points), 1)
    atomic_write_json(folder / "probe.json", points)
    for checkpoint in checkpoints:
        shutil.rmtree(checkpoint)


# ------------------------------------------------------------------------------------------------
# report


def curves(summaries: list[dict]) -> tuple[list[int], np.ndarray]:
    xs = [p["responses_generated"] for p in summaries[0]["heldout"]]
    for summary in summaries:
        if [p["responses_generated"] for p in summary["heldout"]] != xs:
            raise ValueError("runs of one arm were evaluated at different points; re-run with the same --every")
    return xs, np.array([[p["accuracy"] for p in s["heldout"]] for s in summaries])


def plot_curves(path: Path, data: dict[str, tuple[list[int], np.ndarray]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for name, (xs, values) in data.items():
        mean, low, high = bootstrap_band(values)
        (line,) = axis.plot(xs, mean, marker="o", markersize=3, label=f"{name} ({len(values)} seeds)")
        axis.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    axis.set_xlabel("responses generated")
    axis.set_ylabel("held-out accuracy (T=1)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    staging = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(staging, dpi=120)
    plt.close(figure)
    staging.replace(path)


def plot_probe(path: Path, probes: list[list[dict]]) -> None:
    """PRM learning: held-out AUC, pairwise accuracy and step localisation vs responses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("auc", "AUC (sequence reward)"), ("pairwise_accuracy", "pairwise accuracy within groups"),
              ("step_localisation", "slip localisation (lowest step)")]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    xs = [p["responses_generated"] for p in probes[0]]
    for name in ("online PRM", "frozen offline PRM", "reference log-likelihood"):
        for axis, (key, label) in zip(axes, panels):
            rows = [[_value(point, name, key) for point in run] for run in probes]
            mean, low, high = bootstrap_band(rows)
            (line,) = axis.plot(xs, mean, marker="o", markersize=3, label=name)
            axis.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
            axis.set_title(label, fontsize=10)
            axis.set_xlabel("responses generated")
            axis.grid(alpha=0.3)
    chance = np.mean([[point["scorers"]["frozen offline PRM"]["step_chance"] for point in run] for run in probes], 0)
    axes[2].plot(xs, chance, color="gray", linestyle=":", label="chance (random step)")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    figure.suptitle(f"Implicit PRMs on the PRIME policy's held-out samples ({len(probes)} seeds, 95% bootstrap bands)")
    figure.tight_layout()
    _save(figure, path)


def _value(point: dict, scorer: str, key: str) -> float:
    """A probe value; the online PRM at step 0 is the reference itself (q = 0): chance by definition."""
    if scorer == "online PRM" and scorer not in point["scorers"]:
        return {"auc": 0.5, "pairwise_accuracy": 0.5}.get(key, point["scorers"]["frozen offline PRM"]["step_chance"])
    return point["scorers"][scorer][key]


def _interval(values: np.ndarray) -> str:
    mean, low, high = bootstrap_band(values.reshape(-1, 1))
    return f"{mean[0]:.3f} [{low[0]:.3f}, {high[0]:.3f}]"


def report(world: World, summaries: dict[str, list[dict]], probes: list[list[dict]], sweep: list[dict],
           args: argparse.Namespace) -> str:
    data = {ARMS[arm].name: curves(runs) for arm, runs in summaries.items() if runs}
    spec = toy.WORLDS[world.name]
    seeds = " ".join(map(str, args.seeds))
    commits = store_runs(world.root, world.name, args.seeds)
    lines = [
        f"## The PRIME ablation at toy scale ({world.name} world)", "",
        f"`{COMMAND} --world {world.name} --seeds {seeds} --steps {args.steps} --every {args.every}` "
        "(resumable; each run was one locked chunk, `--arms A --seeds S --no_report`; the PRM sweep: "
        "`--sweep --steps 24`; the search settings: `--tag NAME ... -- FLAGS`). Runs made at commit(s) "
        f"{', '.join(commits)}; each run's command, commit and held-out curve: `benchmarks/results/{SECTION}/{world.name}/`.", "",
        f"- world `{world.name}` (`primekit.toy.WORLDS`): {_describe(spec)}. {_describe_policy(world.root)}",
        f"- every arm: {args.steps} steps x 512 responses generated (128 prompts x 4 at T=1), one policy update "
        "per step, policy lr 1e-4 (toy recipe); PRIME arms train on 64 of the 128 groups (accuracy filter "
        f"[0.2, 0.8]); GRPO is TRL's `GRPOTrainer` with its defaults on all 512. PRIME's PRM: update `before` (the `after` arm: `after`), "
        f"{256 // PRM_MINI_BATCH} mini-batches of {PRM_MINI_BATCH} per step, lr {PRM_SETTINGS['prm_learning_rate']:g}, "
        f"beta {PRM_SETTINGS['prm_beta']:g} (chosen by the sweep{' below' if sweep else ''}).",
        f"- held-out accuracy: {args.heldout} unseen problems, one sample each at T=1, same sampling seed everywhere; "
        "mean over seeds with a 95% percentile bootstrap band over seeds (a picture of the spread: over 5 seeds it "
        "covers well below 95%; the paired table below is the comparison).", "",
        "| responses generated | " + " | ".join(data) + " |", "|---|" + "---|" * len(data)]
    xs = next(iter(data.values()))[0]
    for index, x in enumerate(xs):
        lines.append(f"| {x} | " + " | ".join(_interval(values[:, index]) for _, values in data.values()) + " |")
    lines += ["", f"![accuracy vs responses]({SECTION}.png)", ""]
    lines += _ratio_table(data)
    lines += _paired_table(world.root, args.seeds)
    if probes:
        lines += _probe_table(probes)
    if sweep:
        lines += _sweep_table(sweep)
    lines += ["", _wall_time(world, summaries, Path(args.runs)), ""]
    return "\n".join(lines)


def _wall_time(world: World, summaries: dict[str, list[dict]], runs: Path) -> str:
    """Measured seconds: this world's ablation runs, and everything under ``runs`` (every world,
    search setting and sweep: training with its held-out evaluations, PRM probes, set-up)."""
    main = sum(s["seconds"] for group in summaries.values() for s in group)
    training = sum(json.loads(path.read_text())["seconds"] for path in runs.rglob("summary.json"))
    probing = sum(point["probe_seconds"] for path in runs.rglob("probe.json") for point in json.loads(path.read_text()))
    setup = sum(sum(json.loads(path.read_text()).values()) for path in runs.rglob("timings.json"))
    per_arm = ", ".join(f"{ARMS[arm].name} {np.mean([s['seconds'] for s in group]):.0f} s"
                        for arm, group in summaries.items() if group)
    return (f"Wall time on this 2-core machine: the {world.name} ablation's runs took {main / 60:.0f} min (mean per "
            f"run, held-out evaluations included: {per_arm}); everything in this section (all worlds, the search "
            f"and the sweep) took {(training + probing + setup) / 60:.0f} min: training {training / 60:.0f}, PRM "
            f"probes {probing / 60:.0f}, SFT warm-ups and offline PRMs {setup / 60:.0f}. Every run held the shared "
            "CPU lock, so no other job ran during it; other jobs ran between runs.")


def _describe(spec) -> str:
    task = spec.task
    operands = f"{task.num_operands}-{task.max_operands}" if task.max_operands else str(task.num_operands)
    errors = [f"{label} {value:g}" for label, value in (
        ("share skipping the steps", spec.skip_rate), ("share with one slipped step", spec.slip_rate),
        ("each step slips with chance", spec.step_slip_rate),
        ("a needed carry is forgotten with chance", spec.carry_slip_rate),
        (f"a step adding {spec.systematic_operand} is one too high with chance", spec.systematic_slip_rate),
        ("two slips that cancel (right answer, wrong work) with chance", spec.compensating_slip_rate),
        ("a line is written with spaces with chance", task.space_rate))
        if value]
    warmup = f" ({spec.steps} SFT steps)" if spec.steps != type(spec)().steps else ""
    return (f"{operands} operands of 1 to {10 ** task.max_digits - 1} ({' '.join(task.operators)}); SFT targets"
            f"{warmup}: " + (", ".join(errors) if errors else "all worked correctly"))


def _describe_policy(root: Path) -> str:
    policy = _json(root / "policy.json")
    if policy is None:
        return ""
    steps = ", ".join(f"{value:.2f} with {count} steps" for count, value in policy["sampled_by_steps"].items())
    return (f"Its SFT policy on {policy['problems']} held-out problems: greedy accuracy {policy['greedy']:.3f}, "
            f"sampled at T=1 {policy['sampled']:.3f} ({steps}).")


def _ratio_table(data: dict[str, tuple[list[int], np.ndarray]]) -> list[str]:
    baseline = ARMS["rloo"].name
    if baseline not in data:
        return []
    xs, rloo = data[baseline]
    lines = [f"Sample efficiency: responses each arm needs to reach RLOO's final mean accuracy "
             f"({rloo.mean(0)[-1]:.3f}), on seed-mean curves with linear interpolation (a curve still rising at "
             f"the end is extended along its last segment by up to {EXTRAPOLATE:.0%} more responses); ratio = "
             "RLOO's / the arm's, 95% interval from 2000 seed resamples of both arms (0 = target not reached).", "",
             "| arm | final accuracy | responses to RLOO's final | RLOO / arm [95% CI] | resamples reaching it |",
             "|---|---|---|---|---|"]
    for name, (_, values) in data.items():
        result = efficiency_ratio(xs, rloo, values, extrapolate=EXTRAPOLATE)
        needed = f"{result.variant_responses:.0f}" if result.variant_responses is not None else "not reached"
        lines.append(f"| {name} | {_interval(values[:, -1])} | {needed} | {result.ratio:.2f} "
                     f"[{result.low:.2f}, {result.high:.2f}] | {result.reached_fraction:.0%} |")
    return lines + [""]


def _by_seed(base: Path, arm: str, seeds: list[int]) -> dict[int, dict]:
    return {seed: summary for seed in seeds if (summary := _json(base / f"{arm}-seed{seed}" / "summary.json"))}


def _paired_table(base: Path, seeds: list[int]) -> list[str]:
    """Each arm against RLOO on the seeds both ran: paired per-seed differences, t-intervals."""
    rloo = _by_seed(base, "rloo", seeds)
    lines = [f"Paired comparison with RLOO ({PAIRED_METHOD}, 95%; runs of one seed share prompt order and sampling "
             "seed in every PRIME-trainer arm; GRPO's pairing is by seed only): the arm's minus RLOO's final held-out "
             "accuracy, mean accuracy over the run's "
             "evaluations, and the geometric-mean ratio RLOO's / the arm's responses to reach RLOO's final mean "
             "accuracy (exp of the mean per-seed log ratio; '-' when a seed never reaches it).", "",
             "| arm | seeds | final accuracy, arm - RLOO | mean accuracy, arm - RLOO | RLOO / arm responses |",
             "|---|---|---|---|---|"]
    for arm in ARMS:
        if arm == "rloo":
            continue
        runs = _by_seed(base, arm, seeds)
        shared = sorted(set(runs) & set(rloo))
        if len(shared) < 2:
            continue
        xs, baseline = curves([rloo[seed] for seed in shared])
        result = paired_comparison(xs, baseline, curves([runs[seed] for seed in shared])[1], extrapolate=EXTRAPOLATE)

        def difference(value) -> str:
            return f"{value.mean:+.4f} [{value.low:+.4f}, {value.high:+.4f}]"

        ratio = (f"{np.exp(result.efficiency.mean):.3f} [{np.exp(result.efficiency.low):.3f}, "
                 f"{np.exp(result.efficiency.high):.3f}]" if result.efficiency is not None else "-")
        lines.append(f"| {ARMS[arm].name} | {len(shared)} | {difference(result.final_accuracy)} | "
                     f"{difference(result.mean_accuracy)} | {ratio} |")
    return lines + [""] if len(lines) > 4 else []


def store_runs(base: Path, world: str, seeds: list[int]) -> list[str]:
    """Copy each run's held-out curve (with its commit and command) to the results folder, so the
    report's claims can be checked; return the commits they were made at."""
    folder = RESULTS / SECTION / world
    commits = set()
    for arm in ARMS:
        for seed, summary in _by_seed(base, arm, seeds).items():
            record = _json(base / f"{arm}-seed{seed}" / "run.json") or {"commit": "unrecorded", "command": None}
            commits.add(record["commit"])
            atomic_write_json(folder / f"{arm}-seed{seed}.json", {
                "arm": arm, "seed": seed, "commit": record["commit"], "command": record["command"],
                "steps": summary["steps"], "seconds": summary["seconds"],
                "heldout": [{key: point[key] for key in ("step", "responses_generated", "accuracy")}
                            for point in summary["heldout"]]})
    return sorted(commits)


def _probe_table(probes: list[list[dict]]) -> list[str]:
    scorers = ("online PRM", "frozen offline PRM", "reference log-likelihood")
    lines = [f"PRM learning and slip localisation, on {probes[0][0]['responses']} held-out samples of the PRIME "
             f"policy at each checkpoint ({PROBE_SAMPLES} per problem, T=1), mean over {len(probes)} seeds. AUC: "
             "sequence score vs correctness; pairwise: within a problem's group; localisation: on one-slip "
             "responses, how often the lowest step (token) score is on (in) the slipped line (chance in brackets); "
             "advantage corr.: correlation of PRIME's per-token advantages with these rewards and RLOO's on the same "
             "samples (1 = the process rewards change nothing). The online PRM at step 0 is the reference itself "
             "(q = 0).", "",
             f"![PRM learning]({SECTION}_prm.png)", "",
             "| step | responses | policy accuracy | one-slip share | scorer | AUC | AUC (min step) | pairwise | "
             "step localisation | token localisation | advantage corr. |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for index, point in enumerate(probes[0]):
        for scorer in scorers:
            if scorer not in point["scorers"]:
                continue

            def mean(key: str) -> float | None:
                values = [run[index]["scorers"][scorer].get(key) for run in probes]
                return None if any(v is None for v in values) else float(np.mean(values))

            correlation = mean("advantage_correlation")
            lines.append(f"| {point['step']} | {point['responses_generated']} | "
                         f"{np.mean([run[index]['accuracy'] for run in probes]):.3f} | "
                         f"{np.mean([run[index]['one_slip_fraction'] for run in probes]):.3f} | {scorer} | "
                         f"{mean('auc'):.3f} | {mean('auc_min_step'):.3f} | {mean('pairwise_accuracy'):.3f} | "
                         f"{mean('step_localisation'):.3f} ({mean('step_chance'):.3f}) | "
                         f"{mean('token_localisation'):.3f} ({mean('token_chance'):.3f}) | "
                         + (f"{correlation:.3f} |" if correlation is not None else "- |"))
    return lines + [""]


def _sweep_table(sweep: list[dict]) -> list[str]:
    steps = sweep[0]["summary"]["steps"]
    lines = [f"PRM learning-rate x beta sweep (PRIME, seed 0, {steps} steps, {256 // PRM_MINI_BATCH} PRM mini-batches "
             "per step): the online PRM's held-out AUC, pairwise accuracy and step localisation at the last "
             "checkpoint, and the policy's final held-out accuracy. The PRIME arm above uses the setting with the "
             "best AUC.", "",
             "| PRM lr | beta | AUC | pairwise | step localisation | final held-out accuracy |", "|---|---|---|---|---|---|"]
    for row in sweep:
        last = row["probe"][-1]["scorers"]["online PRM"]
        lines.append(f"| {row['prm_learning_rate']:g} | {row['prm_beta']:g} | {last['auc']:.3f} | "
                     f"{last['pairwise_accuracy']:.3f} | {last['step_localisation']:.3f} | "
                     f"{row['summary']['heldout'][-1]['accuracy']:.3f} |")
    return lines + [""]


# ------------------------------------------------------------------------------------------------


def _json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _summaries(base: Path, seeds: list[int]) -> dict[str, list[dict]]:
    found = {arm: [_json(base / f"{arm}-seed{seed}" / "summary.json") for seed in seeds] for arm in ARMS}
    return {arm: [s for s in runs if s is not None] for arm, runs in found.items()}


def _sweep_folder(world: World, settings: dict[str, float]) -> Path:
    return world.root / "sweep" / f"lr{settings['prm_learning_rate']:g}-beta{settings['prm_beta']:g}"


def run_base(world: World, tag: str | None, extra: list[str]) -> Path:
    """Where an ablation's runs live: the world's folder, or a named search setting under it
    (its flags recorded, so the report can list every setting tried)."""
    if tag is None:
        return world.root
    base = world.root / "search" / tag
    recorded = _json(base / "settings.json")
    if recorded is not None and recorded["flags"] != extra:
        raise SystemExit(f"search setting '{tag}' was run with {recorded['flags']}, not {extra}")
    atomic_write_json(base / "settings.json", {"flags": extra})
    return base


def search_rows(runs: Path, steps: int) -> list[str]:
    """Every (world, setting) tried: final accuracies and PRIME's ratio over RLOO on its seeds."""
    lines = ["Search: every world and setting run (the main table above included). Settings are flags added to "
             "every PRIME-trainer run of that row; RLOO does not depend on them, so a row without its own RLOO "
             "runs is compared with its world's RLOO runs on the same seeds. Final held-out accuracy, mean over "
             "the seeds run; ratio = responses RLOO needs / responses PRIME needs to reach RLOO's final accuracy, "
             "95% seed-bootstrap interval (single seed: no interval).", "",
             "| world | setting | seeds | PRIME | frozen offline PRM | RLOO | PRIME / RLOO ratio |", "|---|---|---|---|---|---|---|"]
    worlds = sorted(path for path in runs.iterdir() if (path / "data").is_dir() and path.name in toy.WORLDS)
    lines[1:1] = ["", *(f"- `{path.name}`: {_describe(toy.WORLDS[path.name])}. {_describe_policy(path)}"
                        for path in worlds)]
    for world_dir in worlds:
        bases = [(world_dir, "official PRIME settings (coef 5 / 5)")]
        bases += [(tag_dir, " ".join(_json(tag_dir / "settings.json")["flags"]))
                  for tag_dir in sorted((world_dir / "search").glob("*")) if (tag_dir / "settings.json").is_file()]
        for base, setting in bases:
            seeds = sorted(int(path.name.rsplit("seed", 1)[1]) for path in base.glob("prime-seed*")
                           if (path / "summary.json").is_file())
            if not seeds:
                continue
            summaries = _summaries(base, seeds)
            if not summaries["rloo"]:
                summaries["rloo"] = _summaries(world_dir, seeds)["rloo"]
            if len(summaries["rloo"]) != len(seeds) or summaries["prime"][0]["steps"] != steps:
                continue
            finals = {arm: (f"{np.mean([r['heldout'][-1]['accuracy'] for r in group]):.3f}" if group else "-")
                      for arm, group in summaries.items()}
            xs, rloo = curves(summaries["rloo"])
            ratio = efficiency_ratio(xs, rloo, curves(summaries["prime"])[1], extrapolate=EXTRAPOLATE)
            interval = f" [{ratio.low:.2f}, {ratio.high:.2f}]" if len(seeds) > 1 else ""
            lines.append(f"| {world_dir.name} | {setting} | {len(seeds)} | {finals['prime']} | {finals['frozen_offline']} | "
                         f"{finals['rloo']} | {ratio.ratio:.2f}{interval} |")
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="carry-chains", choices=sorted(toy.WORLDS))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=48, help="RL steps per run")
    parser.add_argument("--every", type=int, default=4, help="held-out evaluation every N steps")
    parser.add_argument("--probe_every", type=int, default=3, help="PRM probe every N held-out evaluations")
    parser.add_argument("--heldout", type=int, default=2000, help="held-out problems per evaluation")
    parser.add_argument("--probe_problems", type=int, default=500, help="held-out problems per PRM probe (x4 samples)")
    parser.add_argument("--runs", default="runs/rl_ablation", help="folder of the individual runs (resumable)")
    parser.add_argument("--tag", default=None, help="name of a search setting: its runs (with the extra options "
                                                    "after --) go to <world>/search/<tag> and into the search table")
    parser.add_argument("--sweep", action="store_true", help="run the PRM lr x beta sweep (PRIME, first seed)")
    parser.add_argument("--sweep_only", type=int, default=None, help="run only this entry of the sweep")
    parser.add_argument("--no_report", action="store_true", help="train only (one chunk); write no report")
    parser.add_argument("--grpo_worker", help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="options passed to every prime-rl run (after --)")
    args = parser.parse_args()
    if args.grpo_worker:
        grpo_worker(json.loads(args.grpo_worker))
        return 0
    world = prepare_world(args.world, Path(args.runs), args.heldout)

    if args.sweep or args.sweep_only is not None:
        for settings in SWEEP if args.sweep_only is None else [SWEEP[args.sweep_only]]:
            run("prime", world, _sweep_folder(world, settings), args.seeds[0], args, settings)
    else:
        base = run_base(world, args.tag, list(args.extra))
        for arm in args.arms:
            for seed in args.seeds:
                run(arm, world, base / f"{arm}-seed{seed}", seed, args, PRM_SETTINGS)
    if args.no_report:
        return 0

    describe_policy(world)
    sweep = [{**settings, "summary": _json(folder / "summary.json"), "probe": _json(folder / "probe.json")}
             for settings in SWEEP if (folder := _sweep_folder(world, settings)).joinpath("probe.json").is_file()]
    summaries = _summaries(world.root, args.seeds)
    probes = [probe for seed in args.seeds if (probe := _json(world.root / f"prime-seed{seed}" / "probe.json"))]
    RESULTS.mkdir(exist_ok=True)
    data = {ARMS[arm].name: curves(runs) for arm, runs in summaries.items() if runs}
    if data:
        plot_curves(RESULTS / f"{SECTION}.png", data, f"Toy ablation, {world.name} world: mean and 95% bootstrap band over seeds")
    if probes:
        plot_probe(RESULTS / f"{SECTION}_prm.png", probes)
    text = report(world, summaries, probes, sweep, args) + "\n" + "\n".join(search_rows(Path(args.runs), args.steps))
    atomic_write_text(RESULTS / f"{SECTION}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
