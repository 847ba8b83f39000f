"""Does the toy implicit PRM separate correct from incorrect held-out solutions?

Trains exactly what ``prime-prm train`` does without arguments (toy policy as init and reference,
CE loss on the policy's own graded samples), then reads the held-out samples (toy *test* problems)
with ``ImplicitPRM`` and reports the ROC AUC of several scores against the grader's labels:

* the implicit sequence reward and the step aggregations used for Best-of-N;
* a baseline that needs no PRM: the reference policy's own log-likelihood of the response;
* per error kind: correct vs skipped-steps guesses, and correct vs solutions with an arithmetic slip;
* process check: on slipped solutions, how often the lowest step reward sits on the first wrong step.

    .venv/bin/python benchmarks/prm_auc.py
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from primekit.io import atomic_write_text
from primekit.config import parse_config
from primekit.io import read_jsonl
from primekit.prm.config import ImplicitPRMConfig, PRMModelConfig
from primekit.prm.data import join_right_padded
from primekit.prm.implicit import ImplicitPRM, response_logprobs
from primekit.prm.toy_prm import ToyPRMDataSpec, toy_prm_data
from primekit.prm.training import train_prm

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ".venv/bin/python benchmarks/prm_auc.py"
SEEDS = (42, 1, 2)  # 42: the default seed of `prime-prm train`
STEP = re.compile(r"^(\d+)([+-])(\d+)=(\d+)$")


def first_wrong_step(completion: str) -> int | None:
    """Index of the first ``a+b=c`` line whose arithmetic is wrong (None if every line is right)."""
    for index, line in enumerate(completion.split("\n")):
        match = STEP.match(line)
        if match:
            left, op, right, result = match.groups()
            if (int(left) + int(right) if op == "+" else int(left) - int(right)) != int(result):
                return index
    return None


def reference_loglik(reader: ImplicitPRM, prompts: list[str], completions: list[str]) -> list[float]:
    """sum_t log pi_ref(y_t | ...) of each response: how likely the policy itself finds it."""
    values = []
    for start in range(0, len(prompts), 64):
        encoded = reader.encode(prompts[start:start + 64], completions[start:start + 64])
        batch = join_right_padded([e.prompt_ids for e in encoded], [e.response_ids for e in encoded],
                                  reader.tokenizer.pad_token_id)
        with torch.no_grad():
            logps = response_logprobs(reader.ref, batch["input_ids"], batch["attention_mask"],
                                      batch["completion_mask"])
        values += logps.sum(-1).tolist()
    return values


def auc(labels: np.ndarray, scores, selected: np.ndarray | None = None) -> str:
    selected = np.ones(len(labels), bool) if selected is None else selected
    subset = labels[selected]
    if subset.min() == subset.max():
        return "n/a"
    return f"{roc_auc_score(subset, np.asarray(scores)[selected]):.3f}"


def train_and_read(seed: int) -> dict:
    """Train the default toy PRM with ``seed`` (which also draws its data) and read its held-out set."""
    from primekit.models import resolve_model_name

    output_dir = tempfile.mkdtemp(prefix="prm-auc-")
    config, model_args, *_ = parse_config(
        [ImplicitPRMConfig, PRMModelConfig], ["--output_dir", output_dir, "--save_strategy", "no",
                                           "--disable_tqdm", "true", "--seed", str(seed)],
        prog="prm_auc", description="")
    started = time.perf_counter()
    summary = train_prm(config, model_args)
    spec = ToyPRMDataSpec(num_train_problems=config.toy_num_train_problems,
                          num_eval_problems=config.toy_num_eval_problems,
                          samples_per_problem=config.toy_samples_per_problem, seed=config.seed)
    train_path, eval_path = toy_prm_data(resolve_model_name(None), spec)
    held_out = read_jsonl(eval_path)
    prompts, completions = [r["prompt"] for r in held_out], [r["completion"] for r in held_out]
    reader = ImplicitPRM.from_pretrained(output_dir, device="cpu", batch_size=64)
    return {"config": config, "summary": summary, "seconds": time.perf_counter() - started,
            "train_labels": np.array([r["label"] for r in read_jsonl(train_path)]),
            "labels": np.array([r["label"] for r in held_out]), "completions": completions,
            "results": reader.rewards(prompts, completions),
            "loglik": reference_loglik(reader, prompts, completions)}


def main() -> int:
    runs = [train_and_read(seed) for seed in SEEDS]
    run = runs[0]
    config, labels, results, completions, loglik = (run[key] for key in
                                                    ("config", "labels", "results", "completions", "loglik"))
    sequence = [r.sequence_reward for r in results]
    step_min = [min(r.step_rewards) for r in results]
    step_mean = [float(np.mean(r.step_rewards)) for r in results]
    skipped = np.array([c.lstrip().startswith("\\boxed") for c in completions])
    slips = [first_wrong_step(c) for c in completions]
    slipped = np.array([s is not None for s in slips])
    localised = [int(np.argmin(r.step_rewards)) == s for r, s in zip(results, slips) if s is not None]
    seed_aucs = ", ".join(f"{auc(r['labels'], [x.sequence_reward for x in r['results']])} (seed {seed})"
                          for seed, r in zip(SEEDS, runs))

    lines = [
        "## Toy implicit PRM: held-out AUC", "",
        f"`{COMMAND}` -- trains what `prime-prm train` does without arguments (the toy policy as "
        "initialisation and reference, CE loss, beta 0.05), then reads the held-out samples with "
        "`ImplicitPRM`. Labels come from the grader. Details for the default seed "
        f"{SEEDS[0]}; the other seeds draw their own training and held-out samples.", "",
        f"- training data: {len(run['train_labels'])} samples of the toy policy at temperature 1 on "
        f"{config.toy_num_train_problems} toy training problems, {run['train_labels'].mean():.1%} correct",
        f"- held out: {len(labels)} samples on {config.toy_num_eval_problems} toy test problems, "
        f"{labels.mean():.1%} correct; {skipped.sum()} skip the steps, {slipped.sum()} contain an "
        "arithmetic slip",
        f"- training: {config.num_train_epochs:g} epochs, batch {config.per_device_train_batch_size}, "
        f"lr {config.learning_rate:g} ({config.lr_scheduler_type.value}); {run['summary']['train time']} of "
        f"training, {run['seconds']:.0f} s in all (sampling the data included when not cached), "
        f"{torch.get_num_threads()} CPU threads",
        f"- sequence-reward AUC by seed: {seed_aucs}", "",
        "| score | held-out AUC |", "|---|---|",
        f"| implicit sequence reward r(y) | **{auc(labels, sequence)}** |",
        f"| min step reward | {auc(labels, step_min)} |",
        f"| mean step reward | {auc(labels, step_mean)} |",
        f"| r(y), correct vs skipped-steps guesses only | {auc(labels, sequence, (labels == 1) | skipped)} |",
        f"| r(y), correct vs arithmetic slips only | {auc(labels, sequence, (labels == 1) | slipped)} |",
        f"| no PRM: the policy's own log-likelihood sum log pi_ref(y) | {auc(labels, loglik)} |",
        f"| no PRM, correct vs arithmetic slips only | {auc(labels, loglik, (labels == 1) | slipped)} |",
        "",
        f"Sign accuracy of r(y) (r > 0 predicts correct): "
        f"{np.mean((np.array(sequence) > 0) == (labels == 1)):.3f}. On the {len(localised)} slipped "
        f"solutions, the lowest step reward is on the first wrong step in {np.mean(localised):.1%} of them.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(RESULTS / "prm_auc.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
