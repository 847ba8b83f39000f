"""Scoring throughput of ImplicitPRM against the cost floor and against a naive loop.

Three ways to get the same token rewards for the same responses, timed side by side in one run:

* ``ImplicitPRM.rewards``: strings in, token / step / sequence rewards out (tokenization, length
  sorting, padding, both forward passes, log-softmax, step mapping);
* floor: only the two forward passes (PRM and reference) on the very batches ImplicitPRM builds,
  already tokenized and padded -- what any implementation has to pay;
* naive: one response at a time, two full forward passes and a full log-softmax each.

Throughput is response tokens per second. The toy-shaped models read the toy tokenizer's ids; a
Qwen-shaped pair (Qwen2's tokenizer, an untied 151,936-column head: :mod:`primekit.toy.qwen_shaped`)
reads the same solutions in Qwen2's tokens, in the same run. Run it under the machine's CPU lock:

    flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/prm_bench.py
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from primekit.io import atomic_write_text
from primekit import toy
from primekit.toy import qwen_shaped
from primekit.prm.data import encode_response, join_right_padded
from primekit.prm.implicit import ImplicitPRM

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = "flock /tmp/primekit-cpu.lock .venv/bin/python benchmarks/prm_bench.py"
NUM_RESPONSES, BATCH_SIZE, REPEATS = 256, 64, 3
SIZES = [(128, 2), (256, 4)]  # (hidden size, layers): the toy model, and a wider, deeper one


def build_model(hidden: int, layers: int, seed: int) -> Qwen2ForCausalLM:
    settings = {**toy.tiny_qwen2_config().to_dict(), "hidden_size": hidden, "num_hidden_layers": layers,
                "intermediate_size": 4 * hidden, "layer_types": None}
    config = Qwen2Config(**settings)
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()


def interleaved_medians(runs: dict[str, object], repeats: int) -> dict[str, float]:
    """Median wall time of each ``run()``: one warm-up each, then ``repeats`` rounds that time every
    run once in turn, so a change in machine load hits all of them alike."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(prm, ref, tokenizer, prompts: list[str], responses: list[str]) -> dict[str, float]:
    reader = ImplicitPRM(prm, ref, tokenizer, batch_size=BATCH_SIZE)
    encoded = [encode_response(tokenizer, p, r, append_eos=True) for p, r in zip(prompts, responses)]
    n_tokens = sum(len(e.response_ids) for e in encoded)
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i].prompt_ids) + len(encoded[i].response_ids)))
    batches = [join_right_padded([encoded[i].prompt_ids for i in chunk], [encoded[i].response_ids for i in chunk],
                                 tokenizer.pad_token_id)
               for chunk in (order[s:s + BATCH_SIZE] for s in range(0, len(order), BATCH_SIZE))]

    def floor() -> None:
        with torch.no_grad():
            for batch in batches:
                prm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
                ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)

    def naive() -> None:
        with torch.no_grad():
            for item in encoded:
                ids = torch.tensor([item.prompt_ids + item.response_ids])
                targets = ids[0, len(item.prompt_ids):]
                logps = [model(ids, use_cache=False).logits[0, len(item.prompt_ids) - 1:-1].log_softmax(-1)
                         .gather(-1, targets.unsqueeze(-1)).squeeze(-1) for model in (prm, ref)]
                (reader.coef * (logps[0] - logps[1])).tolist()

    seconds = interleaved_medians({"ImplicitPRM": lambda: reader.rewards(prompts, responses),
                                   "two forwards": floor, "naive loop": naive}, REPEATS)
    return {name: n_tokens / value for name, value in seconds.items()}


def main() -> int:
    torch.set_num_threads(2)
    problems = toy.test_problems(NUM_RESPONSES)
    prompts, responses = [p.prompt for p in problems], [p.solution for p in problems]
    lines = ["## Implicit PRM scoring throughput", "",
             f"`{COMMAND}`. {NUM_RESPONSES} toy solutions (3 steps; about 20 response tokens each in the "
             "toy tokenizer, about 30 in Qwen2's), "
             f"batch size {BATCH_SIZE}, random Qwen2 PRM and reference of the size shown, CPU, "
             f"{torch.get_num_threads()} threads; median of {REPEATS} interleaved timed runs after a warm-up, "
             "all rows in one run under the machine's CPU lock. "
             "Throughput in response tokens per second; *two forwards* is the floor: the PRM and "
             "reference forward passes alone (no KV cache, logits at every position) on the same padded "
             "batches. The Qwen-shaped row reads Qwen2's tokens with an untied 151,936-column head "
             "(most of its parameters); ImplicitPRM computes the head's logits only from the first "
             "response column on, the floor at every position.", "",
             "| model | ImplicitPRM tok/s | two forwards tok/s | naive loop tok/s "
             "| ImplicitPRM / two forwards | ImplicitPRM / naive |",
             "|---|---|---|---|---|---|"]
    toy_tokenizer = toy.build_tokenizer()
    qwen_tokenizer = qwen_shaped.build_tokenizer()
    models = [(f"({layers} x {hidden})", build_model(hidden, layers, 1), build_model(hidden, layers, 2), toy_tokenizer)
              for hidden, layers in SIZES]
    models.append(("Qwen-shaped (2 x 64, 151,936-column head)", qwen_shaped.build_model(qwen_tokenizer, seed=1),
                   qwen_shaped.build_model(qwen_tokenizer, seed=2), qwen_tokenizer))
    for label, prm, ref, tokenizer in models:
        millions = sum(p.numel() for p in prm.parameters()) / 1e6
        tps = measure(prm, ref, tokenizer, prompts, responses)
        lines.append(f"| {millions:.1f}M params {label} | {tps['ImplicitPRM']:,.0f} | {tps['two forwards']:,.0f} | "
                     f"{tps['naive loop']:,.0f} | {tps['ImplicitPRM'] / tps['two forwards']:.2f} | "
                     f"{tps['ImplicitPRM'] / tps['naive loop']:.1f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_text(RESULTS / "prm_bench.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
