"""Character positions become token positions on Qwen2's real tokenizer
(../shared/data/tokenizers/qwen2): ProcessBench's numbered steps and first-error spans, TRL's
step-PRM and ORM layouts with real ids, and slip localisation's token-to-line mapping. Each is
checked against the text written out by hand and positions found by plain string search over
the tokenizer's character offsets."""

from __future__ import annotations

import pytest

from primekit.bon.scorers import trl_prm_input, trl_reward_input
from primekit.eval.processbench import implicit_prm_step_rewards, load_split
from primekit.prm.implicit import ImplicitPRM
from primekit.prm.reading import Query, prm_prompt, separator_spans, token_steps
from primekit.toy import qwen_shaped
from primekit.toy.localisation import SlipCase, localisation, single_slip_step
from test_qwen_reading import COEF, chat_prompt, independent_step_rewards


# the Qwen-shaped models: slow (left out of `make test-fast`)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gsm8k_samples():
    try:
        return load_split("gsm8k", limit=4)
    except Exception as err:  # the data folder is absent
        pytest.skip(f"no ProcessBench data: {err}")


def test_processbench_numbered_steps_and_first_error_spans(qwen_tokenizer, gsm8k_samples):
    prm = qwen_shaped.build_model(qwen_tokenizer, seed=1)
    ref = qwen_shaped.build_model(qwen_tokenizer, seed=2)
    reader = ImplicitPRM(prm, ref, qwen_tokenizer, coef=COEF)
    prompts = [prm_prompt(Query(sample.problem), "chat") for sample in gsm8k_samples]
    rewards = implicit_prm_step_rewards(reader, prompts, gsm8k_samples)
    fused = 0
    for sample, step_rewards in zip(gsm8k_samples, rewards):
        text = "\n\n".join(f"Step {index + 1}: {step}" for index, step in enumerate(sample.steps))
        starts = [text.index(f"Step {index + 1}: {step}") for index, step in enumerate(sample.steps)]
        ends = [*starts[1:], len(text)]
        assert len(step_rewards) == len(sample.steps)  # (batched with padding: float noise ~1e-5)
        assert step_rewards == pytest.approx(
            independent_step_rewards(qwen_tokenizer, prm, ref, chat_prompt(sample.problem), text, ends), abs=1e-4)
        # the labelled first error: its span is its own text and blank line, and the tokens read for
        # it are exactly those whose last character lies there
        if sample.label >= 0:
            first, last = starts[sample.label], ends[sample.label]
            assert text[first:last].rstrip("\n") == f"Step {sample.label + 1}: {sample.steps[sample.label]}"
            offsets = qwen_tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
            inside = [i for i, (_, end) in enumerate(offsets) if first < end <= last]
            mapped = [i for i, step in enumerate(token_steps(offsets, list(zip([0, *ends[:-1]], ends))))
                      if step == sample.label]
            assert mapped == inside and inside
        pieces = [text[a:b] for a, b in qwen_tokenizer(text, return_offsets_mapping=True)["offset_mapping"]]
        fused += sum(piece.endswith("\n\n") and len(piece) > 2 for piece in pieces)
    assert fused > 0  # some step's last character shares a token with the blank line


def test_trl_step_prm_layout_with_real_ids(qwen_tokenizer):
    steps = ["1+2=3.", "3+4 = 7", "So \\boxed{7}."]
    ids, positions = trl_prm_input(qwen_tokenizer, "What is 1+2+4?", steps, "\n")
    assert qwen_tokenizer.bos_token_id is None  # Qwen2.5 has no BOS: nothing is prepended
    prompt_ids = qwen_tokenizer("What is 1+2+4?", add_special_tokens=False)["input_ids"]
    assert ids[:len(prompt_ids)] == prompt_ids
    # every label sits on the separator token "\n" (198), each step tokenized on its own before it
    assert [ids[p] for p in positions] == [198] * 3
    bounds = [len(prompt_ids) - 1, *positions]
    assert [qwen_tokenizer.decode(ids[a + 1:b + 1]) for a, b in zip(bounds, bounds[1:])] == [s + "\n" for s in steps]
    # the steps tokenized apart differ from the joined text: "3." then "\n", not ".\n"
    joined = qwen_tokenizer("What is 1+2+4?" + "".join(s + "\n" for s in steps), add_special_tokens=False)["input_ids"]
    assert joined != ids and 624 in joined and 624 not in ids  # 624 = ".\n"


def test_trl_orm_layout_with_real_ids(qwen_tokenizer):
    chat = trl_reward_input(qwen_tokenizer, prm_prompt(Query("What is 3+4?"), "chat"), "\\boxed{7}")
    by_hand = chat_prompt("What is 3+4?") + "\\boxed{7}<|im_end|>\n"
    assert chat == qwen_tokenizer(by_hand, add_special_tokens=False)["input_ids"]
    # as TRL's RewardTrainer tokenizes a conversation: the template's newline after <|im_end|> is last
    assert chat[-2:] == [151645, 198]
    text = trl_reward_input(qwen_tokenizer, "What is 3+4?\n", "\\boxed{7}")
    assert text == qwen_tokenizer("What is 3+4?\n\\boxed{7}<|im_end|>", add_special_tokens=False)["input_ids"]
    assert text[-1] == qwen_tokenizer.eos_token_id == 151645


def test_slip_localisation_maps_real_tokens_to_lines(qwen_tokenizer):
    prompt, completion = "Compute 12+7*3\n", "12+7=19\n19*3=56\n\\boxed{56}"
    slip = single_slip_step(prompt, completion)
    assert slip == 1
    encoded = qwen_tokenizer(completion, return_offsets_mapping=True, add_special_tokens=False)
    offsets = encoded["offset_mapping"]
    steps = token_steps(offsets, separator_spans(completion, "\n"))
    line_ends = [completion.index("\n") + 1, completion.rindex("\n") + 1, len(completion)]
    assert steps == [next(k for k, end in enumerate(line_ends) if end >= last) for _, last in offsets]
    # digits are single tokens in Qwen2: the slipped line's "56" is two tokens; give them low scores
    scores = [-1.0 if completion[a:b] in ("5", "6") and a < line_ends[1] else 0.0 for a, b in offsets]
    result = localisation([SlipCase(slip, scores, steps)])
    assert (result.step_hits, result.token_hits) == (1, 1)
    assert result.token_chance == pytest.approx(sum(s == 1 for s in steps) / len(steps))
