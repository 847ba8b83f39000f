"""Where PRIME's update lands: the credit-assignment diagnostic on toy worlds and ProcessBench rows.

Toy worlds: each world's SFT policy samples 4 responses at T=1 to each of ``--problems`` held-out
problems; every line is checked (:mod:`primekit.prm.localisation`), so each wrong response's first
erroneous step is known. On that one batch, with the SFT policy as the policy being updated,
:mod:`primekit.rl.diagnose` reads out the schemes:

* ``RLOO (outcome only)``;
* ``PRIME, online PRM``: the implicit PRM of a PRIME run of ``--online_steps`` steps on the world
  (``prime-rl train``, the ablation's PRM settings), read against the SFT policy;
* ``PRIME, offline PRM``: the ablation's frozen offline PRM (``prime-prm train`` on 16k graded samples
  of the SFT policy; :func:`rl_ablation.train_offline_prm`);
  (the worlds with each PRM: :data:`PRM_WORLDS`; the PRMs train in their own locked chunks,
  ``--worlds W --prepare online|offline``)
* ``PRIME, perfect PRM``: -3 on the labelled step, nothing elsewhere (the ceiling).

ProcessBench rows (human-labelled first errors, ``final_answer_correct`` as the outcome), tokenized
with the Qwen2 tokenizer: no 7B policy runs on this machine, so the table there is policy-free -- every
token equally uncertain (p_t the same everywhere), which reduces each share to the schemes' advantages
weighted by token counts. With a real policy and PRM: ``prime-rl diagnose --data processbench:math
--prm PRIME-RL/EurusPRM-Stage1 --prm_context chat``.

Stages are resumable (each world's PRMs and read-outs are stored under ``--runs``; the read-outs
also under ``benchmarks/results/credit_diagnostic/``), so each can run as its own locked chunk:

    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/credit_diagnostic.py --worlds carry-chains --no_report
    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/credit_diagnostic.py   # all stages, then the report
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SECTION = "credit_diagnostic"
STORE = RESULTS / SECTION
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/credit_diagnostic.py"
TOY_WORLDS = ["default", "carry-chains", "confident-slips", "compensating-slips", "sparse-outcomes"]
#: The PRMs trained per world (the others get RLOO and the perfect PRM only): the ablation's world
#: gets both, the candidate world where RLOO's update lands least on the error the online one.
PRM_WORLDS = {"carry-chains": ("online", "offline"), "confident-slips": ("online",)}
#: Worlds read without the accuracy filter: nearly every group is all wrong there.
UNFILTERED = {"sparse-outcomes"}
PROCESSBENCH_SPLITS = ["gsm8k", "math"]
QWEN2_TOKENIZER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tokenizers" / "qwen2"


def log(message: str) -> None:
    print(f"[credit_diagnostic] {message}", file=sys.stderr, flush=True)


def commit() -> str:
    """The commit the numbers were made at (``+dirty`` when the tree had changes)."""
    root = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=root).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=root).stdout.strip()
    return head + ("+dirty" if dirty else "")


def online_prm(world, folder: Path, steps: int) -> Path:
    """The implicit PRM after ``steps`` PRIME steps on the world (the ablation's PRM settings)."""
    import rl_ablation

    prm = folder / "prm"
    if (prm / "implicit_prm.json").is_file():
        return prm
    log(f"online PRIME run ({steps} steps) -> {folder}")
    command = [sys.executable, "-m", "primekit.rl.commands", "--model", world.policy,
               "--dataset", str(world.train_file), "--heldout", "none", "--max_steps", str(steps), "--seed", "0",
               "--output_dir", str(folder), "--max_completion_length", str(world.max_new_tokens),
               "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no",
               "--prm_mini_batch_size", str(rl_ablation.PRM_MINI_BATCH),
               *[item for key, value in rl_ablation.PRM_SETTINGS.items() for item in (f"--{key}", str(value))]]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=rl_ablation._env())
    (folder / "seconds.json").write_text(json.dumps({"seconds": round(time.perf_counter() - started, 1)}))
    return prm


def diagnose_world(name: str, args: argparse.Namespace) -> dict:
    """The read-out of one toy world (stored; recomputed only when missing)."""
    import rl_ablation
    import torch

    from primekit.models import load_causal_lm, load_tokenizer
    from primekit.prm.implicit import ImplicitPRM
    from primekit.rl.diagnose import (DiagnoseArguments, diagnose_batch, encode_batch, policy_token_statistics,
                                      toy_responses)

    stored = STORE / f"toy-{name}.json"
    if stored.is_file():
        return json.loads(stored.read_text())
    torch.set_num_threads(2)
    world = rl_ablation.prepare_world(name, Path(args.runs), 2000)
    prms = {}
    if "online" in PRM_WORLDS.get(name, ()):
        prms["PRIME, online PRM"] = online_prm(world, Path(args.runs) / name / "credit-online", args.online_steps)
    if "offline" in PRM_WORLDS.get(name, ()):
        prms["PRIME, offline PRM"] = rl_ablation.train_offline_prm(world)
    started = time.perf_counter()
    options = DiagnoseArguments(data=f"toy:{name}", problems=args.problems, seed=args.seed,
                                filter_accuracy=name not in UNFILTERED)
    responses = toy_responses(name, world.policy, options.problems, options.group_size, 1.0, options.seed)
    policy, tokenizer = load_causal_lm(world.policy, dtype="float32"), load_tokenizer(world.policy)
    batch = encode_batch(tokenizer, responses, options.group_size)
    q = {}
    for label, path in prms.items():
        reader = ImplicitPRM.from_pretrained(path, world.policy, dtype="float32", device="cpu", batch_size=256)
        q[label] = reader.token_logratios(batch.input_ids, batch.attention_mask, batch.response_mask).float()
    probs, squares = policy_token_statistics(policy, batch, batch_size=256)
    result = diagnose_batch(batch, probs, squares, q, options, model=policy)
    result.update(world=name, seconds=round(time.perf_counter() - started, 1), commit=commit(),
                  settings={"problems": options.problems, "group_size": options.group_size, "seed": options.seed,
                            "filter_accuracy": options.filter_accuracy, "online_steps": args.online_steps,
                            "prms": {label: str(path) for label, path in prms.items()}})
    STORE.mkdir(parents=True, exist_ok=True)
    from primekit.io import atomic_write_json

    atomic_write_json(stored, result)
    return result


def diagnose_processbench(split: str, args: argparse.Namespace) -> dict:
    """Policy-free read-out of ProcessBench rows (see the module docstring)."""
    import torch

    from primekit.models import load_tokenizer
    from primekit.paths import data_dir
    from primekit.rl.diagnose import DiagnoseArguments, diagnose_batch, encode_batch, read_labelled_file

    stored = STORE / f"processbench-{split}.json"
    if stored.is_file():
        return json.loads(stored.read_text())
    started = time.perf_counter()
    options = DiagnoseArguments(data=f"processbench:{split}", max_rows=args.processbench_rows, seed=args.seed)
    responses = read_labelled_file(data_dir() / "processbench" / f"{split}.json", options)
    batch = encode_batch(load_tokenizer(str(QWEN2_TOKENIZER)), responses, options.group_size)
    # every token p = 1/2 against one rival token: sum_v pi_v^2 = 1/2
    half = torch.full(batch.input_ids.shape, 0.5)
    result = diagnose_batch(batch, half * batch.response_mask, half, {}, options)
    result.update(split=split, seconds=round(time.perf_counter() - started, 1), commit=commit(),
                  settings={"rows": args.processbench_rows, "group_size": options.group_size,
                            "token_probability": 0.5})
    STORE.mkdir(parents=True, exist_ok=True)
    from primekit.io import atomic_write_json

    atomic_write_json(stored, result)
    return result


def report(toy_results: dict[str, dict], bench_results: dict[str, dict], args: argparse.Namespace) -> str:
    from primekit import toy
    from primekit.rl.diagnose import render

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import rl_ablation

    commits = sorted({r["commit"] for r in [*toy_results.values(), *bench_results.values()]})
    lines = [
        "## Credit assignment: where PRIME's update lands", "",
        f"`{COMMAND}` (each world one locked chunk with `--worlds W --no_report`; results stored in "
        f"`benchmarks/results/{SECTION}/`, made at commit {', '.join(commits)}; nothing else ran under the lock).", "",
        "On one batch of responses whose first erroneous step is known, each scheme's per-token advantages A_t "
        "are composed as the PRIME trainer composes them (`primekit.rl.advantages`: token rewards, batch-max "
        "norm, RLOO of both streams with coefficients 5 / 5, returns-to-go, whitening; the accuracy filter "
        "[0.2, 0.8] on groups of 4). The negative update weight of a token is |A_t| (1 - p_t) where A_t < 0 (how "
        "hard the update lowers the sampled token's logit); the columns give its share on the erroneous step, "
        "before and after it, on error-free responses, on wrong responses without a readable step, and on right "
        "tokens (error-free responses and before the error) that the policy found uncertain (p_t < 0.9). 'Top "
        "token on the error': share of wrong responses whose largest weight lies on the erroneous step. 'Grad-norm "
        "share': the same share for |A_t| ||e_y - pi_t|| (the logit gradient's norm). Cosines are with the perfect "
        "PRM's gradient: over the batch's logits (exact) and over the policy's parameters; the gradient SNR is "
        "||mean||^2 / mean squared deviation over 2000 bootstrap mini-batches of 8 groups (parameter gradients "
        "per group). The perfect PRM puts q = -3 on the labelled step (its size does not matter after batch-max "
        "normalisation).", ""]
    lines += summary(toy_results, bench_results)
    for name, result in toy_results.items():
        spec = toy.WORLDS[name]
        lines += [f"### Toy world `{name}`", "", f"{rl_ablation._describe(spec)}.", ""]
        lines.append(render(result, f"{args.problems} held-out problems x 4 samples of its SFT policy at T=1"
                            + ("" if result["settings"]["filter_accuracy"] else ", accuracy filter off")))
        lines += ["", f"Read-out time {result['seconds']:.0f} s (sampling, PRM and policy passes, per-group "
                  "gradients).", ""]
    for split, result in bench_results.items():
        lines += [f"### ProcessBench `{split}`, policy-free", ""]
        lines.append(render(result, f"{args.processbench_rows} rows (half with a labelled error), Qwen2 tokens, "
                                    "pseudo-groups of 4 (alternating wrong and right answers), every token p = 0.5"))
        lines += [""]
    return "\n".join(lines)


def _hit_rate(scheme: dict) -> float:
    return scheme["error_step_hits"] / scheme["labelled_responses"] if scheme["labelled_responses"] else float("nan")


def _cell(scheme: dict) -> str:
    return f"{scheme['weight_shares'][2]:.2f} ({_hit_rate(scheme):.2f})"


def summary(toy_results: dict[str, dict], bench_results: dict[str, dict]) -> list[str]:
    """One row per batch: how much room outcome-only RLOO leaves a dense reward (its share of the
    negative update on the erroneous step, how often its largest push in a wrong response is there,
    its share on right uncertain tokens) and what the learned PRMs and the perfect one make of it."""
    rows = [("toy `" + name + "`", result) for name, result in toy_results.items()]
    rows += [("ProcessBench `" + split + "` (policy-free)", result) for split, result in bench_results.items()]
    lines = ["Summary (the tables below have every column): share of the negative update on the erroneous step "
             "and share of wrong responses whose largest push is on it, per scheme; RLOO's share on right "
             "uncertain tokens; the parameter-gradient cosine of RLOO's update with the perfect PRM's.", "",
             "| batch | RLOO on the error | RLOO top push on it | RLOO on right uncertain tokens | learned PRM on the "
             "error (top push) | perfect PRM on the error (top push) | RLOO-perfect cosine |",
             "|---|---|---|---|---|---|---|"]
    for label, result in rows:
        schemes = result["schemes"]

        rloo, perfect = schemes["RLOO (outcome only)"], schemes["PRIME, perfect PRM"]
        learned = [f"{name.removeprefix('PRIME, ')}: {_cell(scheme)}" for name, scheme in schemes.items()
                   if name not in ("RLOO (outcome only)", "PRIME, perfect PRM")]
        cosine = rloo["parameter_cosine_with_perfect"]
        lines.append(f"| {label} | {rloo['weight_shares'][2]:.2f} | {_hit_rate(rloo):.2f} | "
                     f"{rloo['uncertain_weight_share']:.2f} | {'; '.join(learned) or '-'} | {_cell(perfect)} | "
                     f"{'-' if cosine is None else f'{cosine:.3f}'} |")
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="*", default=TOY_WORLDS, help="toy worlds to read (default: all)")
    parser.add_argument("--splits", nargs="*", default=PROCESSBENCH_SPLITS, help="ProcessBench splits")
    parser.add_argument("--problems", type=int, default=128, help="held-out problems per toy world (x4 samples)")
    parser.add_argument("--processbench_rows", type=int, default=400, help="ProcessBench rows per split")
    parser.add_argument("--online_steps", type=int, default=12, help="PRIME steps that train the online PRM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/rl_ablation", help="the ablation's run folder (worlds, offline PRMs)")
    parser.add_argument("--no_report", action="store_true", help="compute the named stages only")
    parser.add_argument("--prepare", choices=["online", "offline"], help="only train this PRM of the named worlds")
    args = parser.parse_args()
    if args.prepare:
        import rl_ablation

        for name in args.worlds:
            world = rl_ablation.prepare_world(name, Path(args.runs), 2000)
            if args.prepare == "online":
                online_prm(world, Path(args.runs) / name / "credit-online", args.online_steps)
            else:
                rl_ablation.train_offline_prm(world)
        return 0
    toy_results = {name: diagnose_world(name, args) for name in args.worlds}
    bench_results = {split: diagnose_processbench(split, args) for split in args.splits}
    if args.no_report:
        return 0
    toy_results = {name: json.loads(path.read_text()) for name in TOY_WORLDS
                   if (path := STORE / f"toy-{name}.json").is_file()}
    bench_results = {split: json.loads(path.read_text()) for split in PROCESSBENCH_SPLITS
                     if (path := STORE / f"processbench-{split}.json").is_file()}
    from primekit.io import atomic_write_text

    text = report(toy_results, bench_results, args)
    atomic_write_text(RESULTS / f"{SECTION}.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
