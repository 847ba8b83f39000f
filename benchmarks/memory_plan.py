"""Planned against measured peak memory of `prime-rl train` on CPU, and the 7B plan on 8 x 80 GB.

Part 1 runs `prime-rl train` for two steps on a toy-sized Qwen2 (about 40M parameters, random
weights, the toy tokenizer), in 1 and 2 processes, under DDP and FSDP2, in PRIME's three modes
(trained PRM, frozen PRM, outcome-only), and compares each process's measured peak with what
`prime-rl plan` says for the same options. Two steps, because AdamW creates its moments at the
first step: the second one is the steady state.

How memory is measured, and why this way: the CPU has no allocator statistics like CUDA's, so
each process reads the kernel's resident-set high-water mark (VmHWM in /proc/self/status). After
its imports the worker resets that mark (writing 5 to /proc/self/clear_refs) and records its RSS;
the peak of the run is VmHWM minus that RSS, read when training returns (before the final save).
glibc would otherwise keep freed tensors in its heap and move its mmap threshold up, so the
workers run with MALLOC_MMAP_THRESHOLD_ fixed at 64 KiB: every tensor of that size or more is its
own mapping and leaves the RSS when freed. Sampling the RSS instead would miss short peaks; a
torch allocator hook on CPU would miss the non-tensor memory the plan does not model. Model
memory dominates by design (the weights alone are 0.15 GiB per model), so what the plan leaves
out (Python objects, the dataset, gloo buffers) shows up as a small positive error.

Part 2 prints the plan of recipes/eurus_2_7b_prime.yaml for a policy with the architecture of
Qwen2.5-Math-7B (config.json written here, no weights) under DDP, FSDP2 and FSDP2 + offload.

    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/memory_plan.py [--cases NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/memory_plan.py"
MMAP_THRESHOLD = 64 * 1024
TOLERANCE = 0.20
GIB = 2**30
PHASES = ("generation", "scoring", "PRM update", "PRM step", "policy update", "policy step")

#: Qwen2.5-Math-7B (and Eurus-2-7B-SFT, its fine-tune): config.json on the hub.
QWEN25_MATH_7B = dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                      num_key_value_heads=4, vocab_size=152064, max_position_embeddings=4096, rope_theta=10000.0,
                      rms_norm_eps=1e-6, tie_word_embeddings=False, dtype="bfloat16")
#: The toy-sized model measured here: the toy tokenizer's vocabulary, Qwen2.5's layer proportions.
TOY_SIZED = dict(hidden_size=512, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=8,
                 num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)


@dataclass(frozen=True)
class Case:
    name: str
    processes: int
    backend: str                 # "ddp" or "fsdp2"
    overrides: tuple[str, ...]   # prime-rl train options beyond the common ones
    model: str = "toy-sized"     # "toy-sized", or "qwen-vocab": Qwen2's vocabulary and an untied head

    @property
    def mode(self) -> str:
        if "--process_reward_coef" in self.overrides:
            mode = "outcome only"
        else:
            mode = "frozen PRM" if "none" in self.overrides else "trained PRM"
        if self.overrides[:2] == LONG:
            mode += f", {LONG[1]}-token completions"
        if "--gradient_accumulation_steps" in self.overrides:
            mode += f", {ACCUMULATE[-1]} micro-batches per step"
        if "--bf16" in self.overrides:
            mode += ", bf16 compute"
        if self.model == "qwen-vocab":
            mode += f", Qwen2 vocabulary ({QWEN_VOCAB['vocab_size']:,}, untied head, hidden {QWEN_VOCAB['hidden_size']})"
        return mode + (", gradient checkpointing" if "--gradient_checkpointing" in self.overrides else "")


TRAINED, FROZEN, OUTCOME = (), ("--prm_update", "none"), ("--process_reward_coef", "0")
LONG = ("--max_completion_length", "160")  # activations about as large as the model states
CASES = [Case(f"{backend}-{processes}p-{label}", processes, backend, overrides)
         for backend in ("ddp", "fsdp2") for processes in (1, 2)
         for label, overrides in (("trained", TRAINED), ("frozen", FROZEN), ("outcome", OUTCOME))]
CASES += [Case("ddp-1p-outcome-long-checkpointed", 1, "ddp", (*LONG, "--gradient_checkpointing", "true", *OUTCOME)),
          Case("ddp-1p-trained-long", 1, "ddp", LONG),
          Case("ddp-1p-trained-long-checkpointed", 1, "ddp", (*LONG, "--gradient_checkpointing", "true")),
          Case("fsdp2-2p-trained-long-checkpointed", 2, "fsdp2", (*LONG, "--gradient_checkpointing", "true"))]
# gradient accumulation (the gradients of earlier micro-batches live through the next backward; FSDP2
# reduce-scatters each one) and bf16 compute (CPU autocast under DDP, FSDP2's bf16 parameters)
ACCUMULATE = ("--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "4")
BF16 = ("--bf16", "true")
CASES += [Case("ddp-1p-trained-accumulate", 1, "ddp", ACCUMULATE),
          Case("ddp-1p-trained-bf16", 1, "ddp", BF16),
          Case("fsdp2-2p-trained-accumulate-bf16", 2, "fsdp2", (*ACCUMULATE, *BF16)),
          Case("ddp-1p-trained-qwen-vocab", 1, "ddp", (), model="qwen-vocab"),
          Case("fsdp2-2p-trained-qwen-vocab-accumulate-bf16", 2, "fsdp2", (*ACCUMULATE, *BF16), model="qwen-vocab")]
#: A Qwen-shaped model whose LM head dominates: Qwen2.5's 152,064-column untied head on a small body
#: (random weights, Qwen2's tokenizer from the shared data).
QWEN_VOCAB = dict(vocab_size=152064, hidden_size=64, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False)
QWEN_TOKENIZER = REPO.parent / "shared" / "data" / "tokenizers" / "qwen2"


def common_options(model_dir: str, output_dir: str) -> list[str]:
    return ["--model", model_dir, "--dataset", "toy", "--heldout", "none", "--output_dir", output_dir,
            "--use_cpu", "true", "--bf16", "false", "--gradient_checkpointing", "false",
            "--per_device_train_batch_size", "8", "--num_generations", "4", "--oversample_factor", "1",
            "--max_completion_length", "32", "--max_steps", "2", "--learning_rate", "1e-4",
            "--prm_learning_rate", "1e-4", "--save_strategy", "no", "--report_to", "none",
            "--logging_steps", "1", "--seed", "0", "--disable_tqdm", "true"]


def _save_random_model(folder: Path, tokenizer, **config) -> str:
    """A seeded random Qwen2ForCausalLM with ``tokenizer``'s special tokens, saved beside it."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    special = {name: getattr(tokenizer, name) for name in ("pad_token_id", "bos_token_id", "eos_token_id")
               if getattr(tokenizer, name) is not None}
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**special, **config))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def save_qwen_vocab_model(folder: Path) -> str:
    from transformers import AutoTokenizer

    return _save_random_model(folder, AutoTokenizer.from_pretrained(QWEN_TOKENIZER), **QWEN_VOCAB)


def save_toy_sized_model(folder: Path) -> str:
    from primekit import toy

    tokenizer = toy.build_tokenizer()
    return _save_random_model(folder, tokenizer, vocab_size=len(tokenizer), **TOY_SIZED)


# ----------------------------------------------------------------------------------------------
# the worker: one process of `prime-rl train`, measuring itself

def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def worker(out_dir: str, argv: list[str]) -> None:
    import gc

    import torch

    import primekit.rl.commands  # noqa: F401  (everything the run imports, before the baseline)
    from primekit.cli import dispatch
    from primekit.rl.trainer import PrimeTrainer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if "--fsdp" in argv:
        fsdp2_on_cpu()[1]()
    record: dict[str, float] = {}
    train = PrimeTrainer.train

    def measured_train(self, *args, **kwargs):
        result = train(self, *args, **kwargs)
        record["peak_rss"] = _status("VmHWM")
        record["distributed_type"] = self.accelerator.distributed_type.value
        return result

    PrimeTrainer.train = measured_train
    gc.collect()
    record["baseline_rss"] = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    started = time.perf_counter()
    status = dispatch("prime-rl", ["train", *argv])
    record["seconds"] = time.perf_counter() - started
    if status != 0:
        raise SystemExit(status)
    rank = os.environ.get("RANK", "0")
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(record))


def fsdp2_on_cpu() -> tuple[dict, object]:
    """The FSDP2 settings and the CPU shim of the 2-process equality test: accelerate enables FSDP only
    on accelerator devices, and tests/rl_distributed_worker.py flips its CPU processes to FSDP."""
    sys.path.insert(0, str(REPO / "tests"))
    from rl_distributed_worker import FSDP2_SETTINGS, force_fsdp_on_cpu

    return FSDP2_SETTINGS, force_fsdp_on_cpu


def case_options(case: Case, model_dir: str, output_dir: str) -> list[str]:
    """The `prime-rl train` options of a case (the plan is asked about the same ones)."""
    argv = common_options(model_dir, output_dir) + list(case.overrides)
    # every response runs to the length cap, the worst case the plan is made for
    length = argv[len(argv) - 1 - argv[::-1].index("--max_completion_length") + 1]
    return argv + ["--generation_kwargs", json.dumps({"min_new_tokens": int(length)})]


def measure(case: Case, model_dir: str, scratch: Path) -> dict:
    """Run the case; its peak (bytes, the largest over its processes) and wall time, or an error."""
    out = scratch / case.name
    out.mkdir(parents=True, exist_ok=True)
    argv = case_options(case, model_dir, str(out / "run"))
    if case.backend == "fsdp2":
        settings, _ = fsdp2_on_cpu()
        argv += ["--fsdp", settings["fsdp"], "--fsdp_config", json.dumps(settings["fsdp_config"])]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "OMP_NUM_THREADS": str(2 // case.processes),
           "PYTHONPATH": str(REPO)}
    launcher = [sys.executable]
    if case.processes > 1 or case.backend == "fsdp2":
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(case.processes),
                     "--master_port", str(29400 + os.getpid() % 500)]
    command = [*launcher, __file__, "--worker", str(out), "--", *argv]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    ranks = [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]
    ran_as = ranks[0]["distributed_type"]
    if case.backend == "fsdp2" and ran_as != "FSDP":
        return {"error": f"ran as {ran_as}, not FSDP (the CPU shim turns multi-process CPU runs into FSDP only)"}
    return {"measured": max(r["peak_rss"] - r["baseline_rss"] for r in ranks),
            "seconds": max(r["seconds"] for r in ranks)}


def planned(case: Case, model_dir: str):
    from primekit.rl.commands import plan_from_args

    argv = case_options(case, model_dir, "unused")
    return plan_from_args([*argv, "--parallelism", case.backend, "--gpus", str(case.processes)])[0]


# ----------------------------------------------------------------------------------------------
# part 2: the 7B plan

def seven_b_plans(folder: Path) -> list[tuple[str, object]]:
    from primekit.rl.commands import plan_from_args

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                                                    **QWEN25_MATH_7B}))
    models = ["--model", str(folder), "--prm", str(folder), "--prm_ref", str(folder)]
    recipe = ["--config", str(REPO / "recipes" / "eurus_2_7b_prime.yaml"), *models, "--gpus", "8", "--gpu_memory_gb", "80"]
    variants = [("ddp", []), ("fsdp2", []), ("fsdp2_offload", []),
                ("fsdp2", ["--vllm_gpu_memory_utilization", "0.5"])]
    return [(name + (" + vLLM 0.5" if extra else ""), plan_from_args([*recipe, "--parallelism", name, *extra])[0])
            for name, extra in variants]


def _gib(value: float) -> str:
    return f"{value / GIB:.2f}"


def report(rows: list[dict], plans: list[tuple[str, object]]) -> str:
    ratios = [row["measured"] / row["plan"].peak for row in rows if "error" not in row]
    excess = [(row["measured"] - row["plan"].peak) / GIB for row in rows if "error" not in row]
    lines = ["## Memory plan vs measured peak (`prime-rl plan`)", "",
             "Part 1: `prime-rl train`, 2 steps on CPU, a toy-sized Qwen2 "
             f"(hidden {TOY_SIZED['hidden_size']}, {TOY_SIZED['num_hidden_layers']} layers, MLP "
             f"{TOY_SIZED['intermediate_size']}, 26-token vocabulary: 40M parameters, fp32, random weights), 8 rows "
             "per process and micro-batch of 11 prompt tokens + 32 (or 160) completion tokens, every response run "
             "to the cap (`min_new_tokens`). Measured: each process's resident-set high-water mark minus its RSS "
             "after imports (VmHWM reset through /proc/self/clear_refs; "
             f"MALLOC_MMAP_THRESHOLD_={MMAP_THRESHOLD} so freed tensors leave the RSS), the largest over the "
             "processes; planned: `prime-rl plan` with the same options and `--parallelism`, `--gpus`. Two processes "
             "run under torchrun (gloo, accelerate's MULTI_CPU); FSDP2 with TrainingArguments' fsdp settings and "
             "the test suite's CPU shim (tests/rl_distributed_worker.py: accelerate enables FSDP only on "
             "accelerator devices).", "",
             "| backend | processes | mode | planned GiB | measured GiB | measured / planned | within ±20% | peak phase | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        case = row["case"]
        if "error" in row:
            lines.append(f"| {case.backend} | {case.processes} | {case.mode} | | | | not run: {row['error'][:120]} | | |")
            continue
        plan = row["plan"]
        ratio = row["measured"] / plan.peak
        lines.append(f"| {case.backend} | {case.processes} | {case.mode} | {_gib(plan.peak)} | {_gib(row['measured'])} | "
                     f"{ratio:.2f} | {'yes' if abs(ratio - 1) <= TOLERANCE else 'NO'} | {plan.peak_phase} | "
                     f"{row['seconds']:.0f} |")
    if ratios:
        lines += ["", f"Measured / planned: {min(ratios):.2f} to {max(ratios):.2f} over {len(ratios)} runs. The "
                  f"measurement sits above the plan by {min(excess):.2f}-{max(excess):.2f} GiB: what the plan does "
                  "not model (Python objects, the dataset and tokenizer, gloo buffers)."]
    lines += ["", "Part 2: the plan of `recipes/eurus_2_7b_prime.yaml` as shipped (the official run's batch: "
              "1024 responses per rollout, 1 per GPU and micro-step; prompt cap 1024 + 3072; gradient "
              "checkpointing; fp32 master weights, bf16 compute; vLLM colocated at 0.7 with sleep mode) for "
              "policy, PRM and PRM reference with the architecture of Qwen2.5-Math-7B (its config.json, no "
              "weights), on 8 GPUs of 80 GiB. GiB per GPU, by phase:", "",
              "| backend | " + " | ".join(PHASES) + " | peak | verdict | largest item | CPU per node (offload) |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, plan in plans:
        phases = " | ".join(_gib(plan.phase_total(p)) if p in plan.phases else "" for p in PHASES)
        largest = plan.largest
        verdict = f"fits, margin {plan.margin:.0%}" if plan.fits else "does not fit"
        host = _gib(plan.host_per_node) if plan.backend.offload else ""
        lines.append(f"| {name} | {phases} | {_gib(plan.peak)} | {verdict} | {largest.model} {largest.kind} "
                     f"{_gib(largest.device)} | {host} |")
    lines += ["", "Without offload, FSDP2 keeps each GPU's shards of the three models (fp32 master weights and "
              "AdamW moments of two of them) on the GPU while vLLM wakes up for generation, so the official 0.7 "
              "share does not fit beside them; FSDP2 + offload (the official run's choice) fits with the margin "
              "shown, and so does FSDP2 with a smaller vLLM share (last row).", "",
              f"Reproduce: `{COMMAND}` (about 10 minutes of CPU; nothing else ran on the 2 cores during a case, "
              "under the shared CPU lock). The full item list of any row: `prime-rl plan` with the same options."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=None, help="case names (default: all): "
                        + ", ".join(case.name for case in CASES))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.worker:
        worker(args.worker, rest[1:] if rest[:1] == ["--"] else rest)
        return
    from primekit.io import atomic_write_json, atomic_write_text

    # measurements are kept per case, so that the cases can be run in several sittings
    store = RESULTS / "memory_plan.json"
    measured = json.loads(store.read_text()) if store.exists() else {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        models = {"toy-sized": save_toy_sized_model(scratch / "model"),
                  "qwen-vocab": save_qwen_vocab_model(scratch / "qwen-vocab")}
        for case in CASES:
            if args.cases is None or case.name in args.cases:
                measured[case.name] = measure(case, models[case.model], scratch)
                atomic_write_json(store, measured)
                print(case.name, measured[case.name], flush=True)
        rows = [{"case": case, **measured[case.name]} for case in CASES if case.name in measured]
        for row in rows:
            if "error" not in row:
                row["plan"] = planned(row["case"], models[row["case"].model])
        plans = seven_b_plans(scratch / "qwen2.5-math-7b")
    atomic_write_text(RESULTS / "memory_plan.md", report(rows, plans))


if __name__ == "__main__":
    main()
