"""Implicit-PRM reading on Qwen2's real tokenizer (../shared/data/tokenizers/qwen2) and 152k-column
Qwen-shaped models: every step mode and aggregate against per-token log-ratios computed here and
steps found by plain string search over the tokenizer's character offsets; ``read_out card``
against ImplicitPRM's own evaluation code, run from the mirrored repository."""

from __future__ import annotations

import ast
import math

import pytest
import torch
from transformers import Qwen2ForCausalLM

from primekit.arguments import PRMReadingArguments
from primekit.prm.implicit import ImplicitPRM
from primekit.prm.reading import Query, aggregate, prm_prompt
from primekit.prm.settings import resolve_reading
from primekit.toy import qwen_shaped
from upstream import PINNED, require_upstream_file

IMPLICIT_PRM_COMMIT = PINNED["PRIME-RL/ImplicitPRM"]
COEF = 0.5  # large enough that the read-outs differ well above float noise
QUERY = "What is 1+2+4?"
SYSTEM = ("<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}."
          "<|im_end|>\n")


# the Qwen-shaped models: slow (left out of `make test-fast`)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(qwen_tokenizer):
    prm = qwen_shaped.build_model(qwen_tokenizer, seed=1)
    ref = qwen_shaped.build_model(qwen_tokenizer, seed=2)
    return prm, ref


def logratio_terms(prm, ref, ids: list[int]) -> list[float]:
    """COEF * (log pi_prm - log pi_ref) of every token of ``ids`` given the ones before (0 for the
    first), from plain forward passes."""
    tensor = torch.tensor([ids])

    def logps(model):
        with torch.no_grad():
            logits = model(input_ids=tensor).logits[0, :-1].float()
        return logits.log_softmax(-1).gather(-1, tensor[0, 1:, None])[:, 0]

    return [0.0] + (COEF * (logps(prm) - logps(ref))).tolist()


def chat_prompt(query: str) -> str:
    """Qwen2.5-Math-Instruct's rendering of one user turn, written out by hand."""
    return f"{SYSTEM}<|im_start|>user\n{query}<|im_end|>\n<|im_start|>assistant\n"


def step_ends_by_search(text: str, separator: str) -> list[int]:
    """Character positions where steps end: after each separator found by str.find, blank-only
    pieces merged into the step before, and the end of the text."""
    ends, at = [], text.find(separator)
    while at != -1:
        ends.append(at + len(separator))
        at = text.find(separator, at + len(separator))
    ends.append(len(text))
    kept = []
    for start, end in zip([0, *ends], ends):
        if end == start:
            continue
        if kept and not text[start:end].strip():
            kept[-1] = end
        else:
            kept.append(end)
    return kept


def independent_step_rewards(tokenizer, prm, ref, prompt: str, text: str, ends: list[int]) -> list[float]:
    """Step rewards from the prompt and the text tokenized apart (the EOS appended), each token's
    term summed into the first step whose end is at or after the token's last character."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = prompt_ids + encoded["input_ids"] + [tokenizer.eos_token_id]
    terms = logratio_terms(prm, ref, ids)[len(prompt_ids):]
    sums = [0.0] * len(ends)
    for term, (_, last) in zip(terms, [*encoded["offset_mapping"], (len(text), len(text))]):
        sums[next(k for k, end in enumerate(ends) if end >= last)] += term
    return sums


RESPONSES = {
    # ".\n" and ".\n\n" are single Qwen2 tokens: a step's period and its newlines share a token
    "newline": ("First, 1+2=3.\nThen 3+4=7.\nSo the answer is \\boxed{7}.", "\n"),
    "double_newline": ("First, 1+2=3.\n\nThen 3+4 = 7\n\n\n\nSo the answer is \\boxed{7}.", "\n\n"),
}


@pytest.mark.parametrize("mode", sorted(RESPONSES))
def test_separator_modes_on_real_merges(qwen_tokenizer, models, mode):
    text, separator = RESPONSES[mode]
    prm, ref = models
    reader = ImplicitPRM(prm, ref, qwen_tokenizer, coef=COEF, step_mode=mode)
    prompt = prm_prompt(Query(QUERY), "chat")
    [result] = reader.rewards([prompt], [text])
    expected = independent_step_rewards(qwen_tokenizer, prm, ref, chat_prompt(QUERY), text,
                                        step_ends_by_search(text, separator))
    assert len(result.step_rewards) == 3
    assert result.step_rewards == pytest.approx(expected, abs=1e-5)
    # the fused tokens really are there: a period and its newline(s) in one token
    pieces = [text[a:b] for a, b in qwen_tokenizer(text, return_offsets_mapping=True)["offset_mapping"]]
    assert (".\n" if mode == "newline" else ".\n\n") in pieces
    # every aggregate from the independent step rewards
    running = [sum(expected[:k + 1]) for k in range(len(expected))]
    by_hand = {"min_step": min(expected), "min_q": min(running), "last": running[-1],
               "mean": sum(expected) / len(expected), "sum_q": sum(running)}
    for how, value in by_hand.items():
        assert aggregate(result.step_rewards, how) == pytest.approx(value, abs=1e-5)
    assert reader.score([prompt], [text], aggregate="min_q") == pytest.approx([by_hand["min_q"]], abs=1e-5)


def test_eurus_rewrite_and_auto_markers(qwen_tokenizer, models):
    prm, ref = models
    reader = ImplicitPRM(prm, ref, qwen_tokenizer, coef=COEF)
    prompt = prm_prompt(Query(QUERY), "chat")
    response = "Step 1: 1+2=3. Step 2: 3+4=7.\nStep 3: The answer is \\boxed{7}."
    [eurus] = reader.rewards([prompt], [response], step_mode="eurus")
    rewritten = "Step 1: 1+2=3.\n\nStep 2: 3+4=7.\n\nStep 3: The answer is \\boxed{7}."
    assert eurus.steps.text == rewritten
    ends = [rewritten.index("Step 2"), rewritten.index("Step 3"), len(rewritten)]
    assert eurus.step_rewards == pytest.approx(
        independent_step_rewards(qwen_tokenizer, prm, ref, chat_prompt(QUERY), rewritten, ends), abs=1e-5)
    # auto keeps the text and cuts before line-start markers (only one here: the inline one is no cut)
    marked = "Step 1: 1+2=3.\nStep 2: 3+4=7.\n\nStep 3: \\boxed{7}"
    [auto] = reader.rewards([prompt], [marked], step_mode="auto")
    ends = [marked.index("Step 2"), marked.index("Step 3"), len(marked)]
    assert auto.steps.text == marked
    assert auto.step_rewards == pytest.approx(
        independent_step_rewards(qwen_tokenizer, prm, ref, chat_prompt(QUERY), marked, ends), abs=1e-5)


def test_chat_context_renders_qwen_markers(qwen_tokenizer, models):
    prm, ref = models
    reader = ImplicitPRM(prm, ref, qwen_tokenizer)
    [item] = reader.encode([prm_prompt(Query(QUERY), "chat")], ["\\boxed{7}"])
    assert item.prompt_ids == qwen_tokenizer(chat_prompt(QUERY), add_special_tokens=False)["input_ids"]
    assert qwen_tokenizer.convert_ids_to_tokens(item.prompt_ids[-3:]) == ["<|im_start|>", "assistant", "Ċ"]
    assert item.response_ids[-1] == qwen_tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645
    assert qwen_tokenizer.pad_token_id == 151643 and reader.tokenizer.eos_token == "<|im_end|>"


# ----------------------------------------------------------------------------------------------
# read_out card: ImplicitPRM's evaluation, run from the mirrored repository


class _TokenListChat:
    """The tokenizer as the transformers of their time answered: ``apply_chat_template(...,
    tokenize=True)`` gave a list of ids (today it gives a dict)."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def apply_chat_template(self, conversation, tokenize=True, **kwargs):
        if not tokenize:
            return self._tokenizer.apply_chat_template(conversation, tokenize=False, **kwargs)
        text = self._tokenizer.apply_chat_template(conversation, tokenize=False, **kwargs)
        return self._tokenizer.encode(text, add_special_tokens=False)


def upstream_functions():
    """``implicit_prm_data_collator``, ``get_logps``, ``compute_beta`` and ``get_reward`` from
    ImplicitPRM's eval/prm_eval_utils.py at the pinned commit, compiled on their own."""
    source = require_upstream_file("PRIME-RL/ImplicitPRM", "eval/prm_eval_utils.py", IMPLICIT_PRM_COMMIT)
    wanted = {"implicit_prm_data_collator", "get_logps", "compute_beta", "get_reward"}
    tree = ast.parse(source)
    lines = {node.name: node.lineno for node in tree.body if isinstance(node, ast.FunctionDef)}
    # the lines primekit cites: the inputs built at 184-226, the read-out at 405-460
    assert 184 <= lines["implicit_prm_data_collator"] <= 226 and 405 <= lines["get_reward"] <= 460
    namespace = {"torch": torch, "pad_sequence": torch.nn.utils.rnn.pad_sequence,
                 "gather_object": lambda value: value}
    module = ast.Module([node for node in tree.body if getattr(node, "name", None) in wanted], [])
    exec(compile(module, "prm_eval_utils.py", "exec"), namespace)
    return namespace


def upstream_card_values(functions, tokenizer, prm, ref, query: str, steps: list[str]) -> list[float]:
    """Q_1 .. Q_K as ImplicitPRM's evaluation computes them (coef 0.001 there, rescaled here)."""
    class Accelerator:  # one process on the CPU
        device = "cpu"

        @staticmethod
        def gather(value):
            return value

    inputs = functions["implicit_prm_data_collator"](
        [{"query": query, "answer": steps, "idx": 0, "reward_idx": 0}], _TokenListChat(tokenizer), None,
        Accelerator(), "implicit_prm")
    inputs["input_ids"], inputs["attention_mask"] = inputs["input_ids"].long(), inputs["attention_mask"].long()
    with torch.no_grad():
        ref_logps = functions["get_logps"](ref, inputs, "implicit_prm")
        rewards, _ = functions["get_reward"](prm, inputs, "implicit_prm", Accelerator(),
                                             ref_per_token_logps=ref_logps)
    values = rewards["w/ ref"]["constant+coef-0.001"]["accumulative"][0][:len(steps)]
    return [COEF / 0.001 * float(value) for value in values]


STEPS = ["Step 1: 1+2=3", "Step 2: 3+4 = 7", "Step 3: the answer is \\boxed{7}"]


def test_card_read_out_is_implicitprms_evaluation(qwen_tokenizer, models):
    prm, ref = models
    functions = upstream_functions()
    reader = ImplicitPRM(prm, ref, qwen_tokenizer, coef=COEF, step_mode="eurus", read_out="card")
    prompt = prm_prompt(Query(QUERY), "chat")
    for steps in (STEPS, [step + "." for step in STEPS], STEPS[:1]):
        [card] = reader.rewards([prompt], [" ".join(steps)])
        assert card.q_values == pytest.approx(
            upstream_card_values(functions, qwen_tokenizer, prm, ref, QUERY, steps), abs=1e-4)


def test_card_and_step_read_outs_differ_by_the_two_documented_tokens(qwen_tokenizer, models):
    prm, ref = models
    prompt = prm_prompt(Query(QUERY), "chat")
    response = " ".join(STEPS)
    steps_reader = ImplicitPRM(prm, ref, qwen_tokenizer, coef=COEF, step_mode="eurus")
    card_reader = ImplicitPRM(prm, ref, qwen_tokenizer, coef=COEF, step_mode="eurus", read_out="card")
    [aligned], [card] = steps_reader.rewards([prompt], [response]), card_reader.rewards([prompt], [response])
    text = "\n\n".join(STEPS)
    assert aligned.steps.text == card.steps.text == text
    # the two tokens, found by character offsets in the conversation
    conversation = chat_prompt(QUERY) + text + "<|im_end|>\n"
    encoded = qwen_tokenizer(conversation, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in encoded["offset_mapping"]]
    terms = logratio_terms(prm, ref, encoded["input_ids"])
    last_prompt_token = starts.index(len(chat_prompt(QUERY)) - 1)  # the "\n" after "assistant"
    assert conversation[starts[last_prompt_token]:len(chat_prompt(QUERY))] == "\n"
    next_markers = [starts.index(len(chat_prompt(QUERY)) + text.index(f"Step {k}")) for k in (2, 3)]
    assert [qwen_tokenizer.decode([encoded["input_ids"][i]]) for i in next_markers] == ["Step", "Step"]
    late = [terms[i] for i in next_markers] + [0.0]
    assert [c - a for c, a in zip(card.q_values, aligned.q_values)] == pytest.approx(
        [terms[last_prompt_token] + extra for extra in late], abs=1e-5)
    assert all(abs(extra) > 1e-3 for extra in [terms[last_prompt_token], *late[:-1]])


def test_card_reads_two_tokens_into_the_next_step_after_a_period(qwen_tokenizer, models):
    # ".\n\n" is one Qwen2 token: the cut conversation ends "3.<|im_end|>\n\n", whose length
    # minus two lands on "Step", so the card also reads the token after it
    prm, ref = models
    prompt = prm_prompt(Query(QUERY), "chat")
    steps = ["Step 1: 1+2=3.", "Step 2: 3+4=7."]
    aligned = ImplicitPRM(prm, ref, qwen_tokenizer, coef=COEF, step_mode="eurus").rewards([prompt], [" ".join(steps)])[0]
    card = ImplicitPRM(prm, ref, qwen_tokenizer, coef=COEF, step_mode="eurus",
                       read_out="card").rewards([prompt], [" ".join(steps)])[0]
    conversation = chat_prompt(QUERY) + "\n\n".join(steps) + "<|im_end|>\n"
    encoded = qwen_tokenizer(conversation, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in encoded["offset_mapping"]]
    terms = logratio_terms(prm, ref, encoded["input_ids"])
    marker = starts.index(conversation.index("Step 2"))
    assert qwen_tokenizer.decode(encoded["input_ids"][marker - 1]) == ".\n\n"
    shift = terms[starts.index(len(chat_prompt(QUERY)) - 1)]
    assert card.q_values[0] - aligned.q_values[0] == pytest.approx(shift + terms[marker] + terms[marker + 1],
                                                                   abs=1e-5)


def test_card_is_eurusprm_stage1s_default_and_steps_stays_primekits(tmp_path):
    from primekit.prm.reading import write_prm_record

    eurus = resolve_reading(PRMReadingArguments(prm="PRIME-RL/EurusPRM-Stage1"))
    assert (eurus.read_out, eurus.step_mode, eurus.coef) == ("card", "eurus", 0.001)
    assert resolve_reading(PRMReadingArguments(prm="PRIME-RL/EurusPRM-Stage1", read_out="steps")).read_out == "steps"
    write_prm_record(tmp_path, base="base", reference="base", beta=0.05)
    assert resolve_reading(PRMReadingArguments(prm=str(tmp_path))).read_out == "steps"
    from primekit.errors import InputError

    with pytest.raises(InputError, match="prm_context chat"):
        resolve_reading(PRMReadingArguments(prm="PRIME-RL/EurusPRM-Stage1", prm_context="prompt"))
    with pytest.raises(InputError, match="read_out"):
        PRMReadingArguments(prm=str(tmp_path), read_out="late")


def test_best_of_n_score_caches_tell_the_read_outs_apart():
    import dataclasses

    from primekit.bon.scorers import ImplicitPRMScorer

    card = resolve_reading(PRMReadingArguments(prm="PRIME-RL/EurusPRM-Stage1"))
    steps = dataclasses.replace(card, read_out="steps")
    assert ImplicitPRMScorer.from_settings(card).identity() != ImplicitPRMScorer.from_settings(steps).identity()
