"""The toy world: task generator, tokenizer round trip, tiny model, and model/tokenizer loading."""

from __future__ import annotations

import hashlib
import random
import re

import pytest
import torch

from primekit import toy
from primekit.errors import InputError
from primekit.models import load_causal_lm, load_tokenizer
from primekit.prm.localisation import step_errors
from primekit.toy.sft import TEST_SEED_OFFSET
from primekit.toy.task import TaskSpec, make_problems, max_sequence_tokens, needs_carry, sft_target, solve

MULTI_LINE = "Compute 50-3-33\n50-3=47\n47-33=14\n\\boxed{14}"


def test_problems_are_deterministic_and_solutions_are_right():
    first, second = make_problems(50, seed=7), make_problems(50, seed=7)
    assert first == second
    assert make_problems(50, seed=8) != first
    for problem in first:
        expression = problem.prompt.removeprefix("Compute ").strip()
        numbers = [int(n) for n in re.findall(r"\d+", expression)]
        signs = [1] + [1 if op == "+" else -1 for op in re.findall(r"[+-]", expression)]
        assert int(problem.answer) == sum(s * n for s, n in zip(signs, numbers))
        assert problem.solution.endswith(f"\\boxed{{{problem.answer}}}")
        assert len(problem.solution.splitlines()) == 3  # two steps + the boxed answer


def test_solve_writes_one_line_per_step_and_carries_a_slip():
    lines, answer = solve([37, 58, 19], ["+", "-"])
    assert lines == ["37+58=95", "95-19=76"] and answer == 76
    slipped, wrong = solve([37, 58, 19], ["+", "-"], slip_at=0, rng=random.Random(0))
    assert slipped[0] != "37+58=95" and wrong != 76
    first_result = int(slipped[0].split("=")[1])
    assert slipped[1] == f"{first_result}-19={first_result - 19}"  # later steps use the slipped value


def test_difficulty_knobs():
    problems = make_problems(20, seed=0, spec=TaskSpec(num_operands=4, max_digits=1))
    assert all(len(p.solution.splitlines()) == 4 for p in problems)
    assert all(max(int(x) for x in p.prompt[8:].strip().replace("+", " ").replace("-", " ").split()) <= 9
               for p in problems)


def test_sft_target_rates():
    problem = make_problems(1, seed=0)[0]
    rng = random.Random(0)
    targets = [sft_target(problem, rng, skip_rate=0.3, slip_rate=0.2) for _ in range(2000)]
    skipped = sum(t.startswith("\\boxed") for t in targets) / len(targets)
    exact = sum(t == problem.solution for t in targets) / len(targets)
    assert abs(skipped - 0.3) < 0.04
    assert abs(exact - 0.5) < 0.05  # slips change the text; skips rarely guess right


def test_tokenizer_round_trips_multi_line_solutions():
    tokenizer = toy.build_tokenizer()
    assert len(tokenizer) == 26
    ids = tokenizer(MULTI_LINE)["input_ids"]
    assert tokenizer.decode(ids) == MULTI_LINE
    assert tokenizer.convert_ids_to_tokens(ids[:2]) == ["Compute", "Ġ"]  # byte-level spelling
    assert tokenizer("\n")["input_ids"] == [tokenizer.convert_tokens_to_ids("Ċ")]  # a step is one token
    assert tokenizer.padding_side == "left"
    assert tokenizer("x")["input_ids"] == [tokenizer.unk_token_id]  # nothing added around a text
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Compute 1+2\n"}],
                                         tokenize=False) == "Compute 1+2\n"


def test_saved_toy_model_loads_with_a_lossless_tokenizer(tmp_path):
    """Next to a Qwen2 config, AutoTokenizer would swap in Qwen2's byte-level pipeline and drop
    spaces and newlines; load_tokenizer must not."""
    toy.random_model(0).save_pretrained(tmp_path)
    toy.build_tokenizer().save_pretrained(tmp_path)
    tokenizer = load_tokenizer(str(tmp_path))
    assert tokenizer.decode(tokenizer(MULTI_LINE)["input_ids"]) == MULTI_LINE
    model = load_causal_lm(str(tmp_path), dtype="float32")
    assert type(model).__name__ == "Qwen2ForCausalLM" and not model.training
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_auto_tokenizer_loads_the_toy_tokenizer_like_ours(tmp_path):
    """vLLM and TRL load tokenizers with AutoTokenizer, which rebuilds a tokenizer saved next to a
    Qwen2 config as Qwen2's byte-level BPE; for the toy tokenizer that rebuild must change nothing."""
    from transformers import AutoTokenizer

    toy.random_model(0).save_pretrained(tmp_path)
    toy.build_tokenizer().save_pretrained(tmp_path)
    auto, ours = AutoTokenizer.from_pretrained(tmp_path), toy.build_tokenizer()
    texts = [MULTI_LINE, "Compute 7+8\n7+8=15\n\\boxed{15}", " 1 (2) {3}*4\n\n"]
    for text in texts:
        ids = ours(text)["input_ids"]
        assert auto(text)["input_ids"] == ids and auto.decode(ids) == text
    # ids are those of the 26-token vocabulary, in its order: "Compute" 4, " " 22, "\n" 25
    assert ours("Compute 1\n")["input_ids"] == [4, 22, ours.convert_tokens_to_ids("1"), 25]


def test_left_padding_does_not_change_log_probs():
    model, tokenizer = toy.random_model(0).eval(), toy.build_tokenizer()
    texts = ["Compute 1+2\n1+2=3\n\\boxed{3}", MULTI_LINE]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        padded = model(**batch).logits[0, -1].log_softmax(-1)
        alone = model(**tokenizer(texts[:1], return_tensors="pt")).logits[0, -1].log_softmax(-1)
    assert torch.allclose(padded, alone, atol=1e-4)


def test_missing_local_model_is_a_one_line_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_causal_lm(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="unknown dtype"):
        load_causal_lm(str(tmp_path), dtype="float8")


def test_warmup_cache_key_tracks_every_setting():
    assert toy.WarmupSpec().key() == toy.WarmupSpec().key()
    assert toy.WarmupSpec(steps=10).key() != toy.WarmupSpec().key()
    assert toy.WarmupSpec(task=TaskSpec(num_operands=4)).key() != toy.WarmupSpec().key()
    assert toy.WarmupSpec(task=TaskSpec(max_operands=5)).key() != toy.WarmupSpec().key()
    assert toy.WarmupSpec(step_slip_rate=0.05).key() != toy.WarmupSpec().key()
    assert toy.WarmupSpec(carry_slip_rate=0.3).key() != toy.WarmupSpec().key()


def test_default_world_and_policy_key_are_unchanged_by_the_added_knobs():
    """Everyone's cached toy policy is keyed by this hash and trained on these targets: adding a
    knob must change neither (the fingerprints were taken before the knobs existed; the key also
    hashes the toy tokenizer, so a tokenizer change does change it, on purpose)."""
    assert toy.DEFAULT_WARMUP.key() == "69d5efab0d12"
    spec, rng = toy.DEFAULT_WARMUP, random.Random(toy.DEFAULT_WARMUP.seed)
    rows = [p.prompt + "|" + sft_target(p, rng, skip_rate=spec.skip_rate, slip_rate=spec.slip_rate,
                                        step_slip_rate=spec.step_slip_rate) for p in toy.train_problems()]
    assert hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16] == "9e0ce7ebee8e606c"
    # the held-out problems are the test generator's draws minus the training prompts: the same
    # generator as before (its first 1000 draws, training prompts included, hash as they did) ...
    drawn = "\n".join(p.prompt + p.solution for p in make_problems(1000, seed=TEST_SEED_OFFSET))
    assert hashlib.sha256(drawn.encode()).hexdigest()[:16] == "1085a595d7a89120"
    # ... with the draws that repeat a training prompt skipped
    held_out = "\n".join(p.prompt + p.solution for p in toy.test_problems(1000))
    assert hashlib.sha256(held_out.encode()).hexdigest()[:16] == "207e2dc1df6c1520"


@pytest.mark.parametrize("world", sorted(toy.WORLDS))
def test_held_out_problems_are_never_training_problems(world):
    spec = toy.WORLDS[world]
    training = {problem.prompt for problem in toy.train_problems(spec)}
    held_out = toy.test_problems(2000, spec)
    assert len(held_out) == 2000 and not any(problem.prompt in training for problem in held_out)
    assert toy.test_problems(50, spec) == held_out[:50]  # a smaller held-out set is a prefix


def test_excluded_prompts_are_skipped_and_an_exhausted_task_is_an_error():
    spec = TaskSpec(num_operands=2, max_digits=1, operators="+")  # 81 distinct prompts
    everything = {problem.prompt for problem in make_problems(2000, seed=0, spec=spec)}
    assert len(everything) == 81
    kept = make_problems(30, seed=1, spec=spec, exclude_prompts={"Compute 1+1\n", "Compute 2+2\n"})
    assert len(kept) == 30 and not {"Compute 1+1\n", "Compute 2+2\n"} & {p.prompt for p in kept}
    with pytest.raises(ValueError, match="too few distinct problems"):
        make_problems(1, seed=0, spec=spec, exclude_prompts=everything)


def test_named_worlds_keep_the_demo_default_and_train_their_own_policies():
    assert toy.WORLDS["default"] is toy.DEFAULT_WARMUP
    keys = {spec.key() for spec in toy.WORLDS.values()}
    assert len(keys) == len(toy.WORLDS)  # one cached policy per world


def test_operand_count_range_mixes_short_and_long_chains():
    spec = TaskSpec(num_operands=3, max_operands=9, max_digits=1)
    problems = make_problems(400, seed=0, spec=spec)
    counts = {len(p.solution.splitlines()) for p in problems}  # steps + the boxed line
    assert counts == set(range(3, 10))
    for problem in problems:
        assert step_errors(problem.prompt, problem.solution) == []
        assert all(int(n) <= 9 for n in re.findall(r"\d+", problem.prompt))


def test_bad_difficulty_settings_are_refused():
    with pytest.raises(ValueError, match="num_operands"):
        TaskSpec(num_operands=1)
    with pytest.raises(ValueError, match="max_operands"):
        TaskSpec(num_operands=4, max_operands=3)
    with pytest.raises(ValueError, match="operators"):
        TaskSpec(operators="/")
    with pytest.raises(ValueError, match="step_slip_rate"):
        toy.WarmupSpec(step_slip_rate=1.5)
    with pytest.raises(ValueError, match="skip_rate \\+ slip_rate"):
        toy.WarmupSpec(skip_rate=0.6, slip_rate=0.6)


def test_step_slips_hit_every_step_of_a_long_chain_and_ruin_the_answer():
    spec = TaskSpec(num_operands=9, max_digits=2)  # 8 steps; 2 digits keep no-op slips (0 - x -> 0) rare
    problems = make_problems(3000, seed=1, spec=spec)
    rng = random.Random(0)
    slipped_at = [0] * 8
    wrong_answers = 0
    for problem in problems:
        target = sft_target(problem, rng, skip_rate=0.0, slip_rate=0.0, step_slip_rate=0.1)
        wrong = step_errors(problem.prompt, target)
        assert wrong is not None and 8 not in wrong  # a worked chain; the boxed line repeats the last value
        for step in wrong:
            slipped_at[step] += 1
        answer_is_wrong = not target.endswith(f"{{{problem.answer}}}")
        wrong_answers += answer_is_wrong
        if len(wrong) == 1:
            assert answer_is_wrong  # one slip anywhere ruins the answer (two may cancel out)
    assert all(abs(count / 3000 - 0.1) < 0.025 for count in slipped_at), slipped_at
    assert abs(wrong_answers / 3000 - (1 - 0.9 ** 8)) < 0.04


def test_carries_and_borrows():
    assert needs_carry(7, "+", 5) and not needs_carry(7, "+", 2) and needs_carry(19, "+", 1)
    assert needs_carry(13, "-", 5) and not needs_carry(15, "-", 3) and not needs_carry(6, "*", 7)
    lines, answer = solve([7, 5, 2, 9], ["+", "+", "-"], rng=random.Random(0), carry_slip_rate=1.0)
    # 7+5 carries (forgotten: 2); 2+2 does not; 4-9 borrows (forgotten: +10)
    assert lines == ["7+5=2", "2+2=4", "4-9=5"] and answer == 5


def test_carry_slips_are_systematic_and_only_where_a_carry_is_needed():
    problem = make_problems(1, seed=0, spec=TaskSpec(num_operands=9, max_digits=1, operators="+"))[0]
    values = [int(n) for n in re.findall(r"\d+", problem.prompt)]
    carry_steps = set()
    running = values[0]
    for index, value in enumerate(values[1:]):
        if needs_carry(running, "+", value):
            carry_steps.add(index)
        running += value
    assert len(carry_steps) >= 2
    rng = random.Random(0)
    targets = [sft_target(problem, rng, skip_rate=0, slip_rate=0, carry_slip_rate=0.3) for _ in range(3000)]
    wrong_lines = [step_errors(problem.prompt, t) for t in targets]
    # the first forgotten carry is on the right chain's carry step (later ones follow the wrong chain)
    assert all(w is not None and (not w or w[0] in carry_steps) for w in wrong_lines)
    exact = sum(t == problem.solution for t in targets) / len(targets)
    assert abs(exact - 0.7 ** len(carry_steps)) < 0.03


def test_sequence_bound_covers_slipped_long_targets():
    tokenizer = toy.build_tokenizer()
    spec = TaskSpec(num_operands=2, max_operands=9, max_digits=2)
    rng = random.Random(0)
    longest = max(len(tokenizer(p.prompt + sft_target(p, rng, skip_rate=0, slip_rate=0.5, step_slip_rate=0.3))
                      ["input_ids"]) + 1 for p in make_problems(500, seed=3, spec=spec))
    assert longest <= max_sequence_tokens(spec) <= 2 * longest


def test_systematic_compensating_and_spaced_targets_by_hand():
    problem = make_problems(1, seed=0, spec=TaskSpec(num_operands=3, max_digits=1, operators="+"))[0]
    values = [int(v) for v in problem.prompt.removeprefix("Compute ").strip().split("+")]
    # every step adding its right operand is one too high at rate 1
    target = sft_target(problem, random.Random(0), skip_rate=0, slip_rate=0, systematic_slip_rate=1.0,
                        systematic_operand=values[1])
    first = values[0] + values[1] + 1
    assert target.splitlines()[0] == f"{values[0]}+{values[1]}={first}"
    # two slips that cancel: the answer is right, two lines are wrong
    target = sft_target(problem, random.Random(0), skip_rate=0, slip_rate=0, compensating_slip_rate=1.0)
    assert target.endswith(f"\\boxed{{{problem.answer}}}") and step_errors(problem.prompt, target) == [0, 1]
    # spaces are harmless: the same lines, all right
    target = sft_target(problem, random.Random(0), skip_rate=0, slip_rate=0, space_rate=1.0)
    assert target == problem.solution.replace("+", " + ").replace("=", " = ")
    assert step_errors(problem.prompt, target) == []
    spaced = TaskSpec(num_operands=3, max_digits=1, operators="+", space_rate=0.5)
    assert max_sequence_tokens(spaced) == max_sequence_tokens(TaskSpec(num_operands=3, max_digits=1, operators="+")) + 8


def test_candidate_worlds_keep_every_existing_world_and_its_key():
    assert toy.WORLDS["long-chains"].key() == "9dc834c5aa8d" and toy.WORLDS["carry-chains"].key() == "8de6f632c704"
    assert {"confident-slips", "sparse-outcomes", "compensating-slips"} <= set(toy.WORLDS)
