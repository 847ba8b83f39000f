"""Reading an implicit PRM: steps, aggregates, records and options against hand-computed values, and
EurusPRM's model-card read-out reproduced independently on tiny models."""

from __future__ import annotations

import json
import re

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from primekit.arguments import PRMReadingArguments
from primekit.config import parse_config
from primekit.errors import InputError
from primekit.prm import reading
from primekit.prm.implicit import ImplicitPRM
from primekit.prm.reading import (KNOWN_PRMS, Query, aggregate, join_steps, prm_prompt, q_values,
                                  read_prm_record, split_steps, threshold_series, write_prm_record)
from primekit.prm.settings import resolve_reading

# ----------------------------------------------------------------------------------------------
# steps


def test_newline_and_double_newline_modes_keep_the_text():
    text = "a\n\nb\nc"
    assert split_steps(text, "newline").texts == ["a\n\n", "b\n", "c"]
    assert split_steps(text, "double_newline").texts == ["a\n\n", "b\nc"]
    for mode in ("newline", "double_newline", "auto"):
        assert split_steps(text, mode).text == text  # only eurus rewrites the response


def test_auto_prefers_line_start_markers_then_blank_lines_then_newlines():
    # "Step 1: a\n" is 10 characters, "Step 2: b" 9 more
    assert split_steps("Step 1: a\nStep 2: b", "auto").spans == ((0, 10), (10, 19))
    # "Let's solve.\n" (13) + "Step 1: x\n" (10): step 2 starts at 23 and runs "**Step 2:** y" (13)
    assert split_steps("Let's solve.\nStep 1: x\n**Step 2:** y", "auto").spans == ((0, 23), (23, 36))
    assert split_steps("a\n\nb\n\nc", "auto").texts == ["a\n\n", "b\n\n", "c"]
    assert split_steps("Step 1: a\nb", "auto").texts == ["Step 1: a\n", "b"]  # one marker: newlines
    assert split_steps("abc", "auto").texts == ["abc"]


def test_eurus_mode_gives_implicitprm_step_texts_on_hand_made_responses():
    # ImplicitPRM's BoN evaluation: split on "Step k:" anywhere, strip, lower-case any other
    # "Step", number again from 1, join with a blank line; a preamble becomes a step of its own.
    response = "Let me think.\nStep 1: Add 1 and 2. Step 2: Step back: 3.\n\nStep 7: The answer is 3."
    steps = split_steps(response, "eurus")
    assert steps.text == ("Step 1: Let me think.\n\nStep 2: Add 1 and 2.\n\nStep 3: step back: 3.\n\n"
                          "Step 4: The answer is 3.")
    # each step closes with its separator; "Step 1: Let me think.\n\n" is 23 characters
    assert steps.texts == ["Step 1: Let me think.\n\n", "Step 2: Add 1 and 2.\n\n",
                           "Step 3: step back: 3.\n\n", "Step 4: The answer is 3."]
    assert steps.spans[0] == (0, 23)
    # no marker at all: the whole (stripped) response is one step, blank lines included
    assert split_steps("  x = 1\n\ny = 2\n", "eurus").texts == ["Step 1: x = 1\n\ny = 2"]


def test_join_steps_keeps_known_steps_whole():
    steps = join_steps(["a\n\nb ", "wrong c", "d"])
    assert steps.text == "Step 1: a\n\nb \n\nStep 2: wrong c\n\nStep 3: d"
    assert steps.texts == ["Step 1: a\n\nb \n\n", "Step 2: wrong c\n\n", "Step 3: d"]
    assert join_steps(["x"], numbered=False).texts == ["x"]


@pytest.mark.parametrize("text", ["Step 1: x\n\nStep 2: y\n", "a\n\n\nb\n", "\n\nx\ny", "q"])
@pytest.mark.parametrize("mode", ["newline", "double_newline", "auto", "eurus"])
def test_spans_cover_the_text_exactly(text, mode):
    steps = split_steps(text, mode)
    assert "".join(steps.texts) == steps.text
    assert steps.spans[0][0] == 0 and steps.spans[-1][1] == len(steps.text)


def test_bad_step_input_is_an_input_error():
    with pytest.raises(InputError, match="unknown step mode 'sentences'"):
        split_steps("a", "sentences")
    with pytest.raises(InputError, match="no text"):
        split_steps(" \n ", "newline")


# ----------------------------------------------------------------------------------------------
# aggregates


def test_aggregates_by_hand():
    r = [0.5, -1.5, 2.0]  # Q = 0.5, -1.0, 1.0
    assert q_values(r) == [0.5, -1.0, 1.0]
    assert aggregate(r, "min_step") == -1.5
    assert aggregate(r, "min_q") == -1.0
    assert aggregate(r, "last") == pytest.approx(1.0)
    assert aggregate(r, "mean") == pytest.approx(1 / 3)
    assert aggregate(r, "sum_q") == pytest.approx(0.5)  # 0.5 - 1.0 + 1.0
    # scores that are already values after each step (a discriminative PRM's probabilities)
    p = [0.9, 0.2, 0.7]
    assert aggregate(p, "min_q", cumulative=False) == aggregate(p, "min_step", cumulative=False) == 0.2
    assert aggregate(p, "last", cumulative=False) == 0.7
    assert aggregate(p, "sum_q", cumulative=False) == pytest.approx(1.8)
    with pytest.raises(ValueError):
        aggregate([], "min_q")


def test_old_aggregate_names_warn_and_unknown_ones_fail():
    with pytest.warns(FutureWarning, match="'min' is deprecated"):
        assert aggregate([0.5, -1.5, 2.0], "min") == -1.5
    with pytest.warns(FutureWarning):
        assert aggregate([0.5, -1.5, 2.0], "sum") == pytest.approx(1.0)
    with pytest.raises(InputError, match="unknown aggregate 'max'"):
        aggregate([1.0], "max")


def test_threshold_series():
    assert threshold_series([0.5, -0.2, 0.3], "min_q") == pytest.approx([0.5, 0.3, 0.6])
    assert threshold_series([0.5, -0.2, 0.3], "min_step") == [0.5, -0.2, 0.3]
    with pytest.raises(InputError, match="min_step or min_q"):
        threshold_series([0.5], "last")


def test_implicit_rewards_scale():
    assert reading.implicit_rewards(-2.0, 0.05) == pytest.approx(-0.1)
    assert torch.equal(reading.implicit_rewards(torch.tensor([1.0, -4.0]), 0.25), torch.tensor([0.25, -1.0]))


# ----------------------------------------------------------------------------------------------
# prompts


def test_prm_prompt_follows_the_context():
    query = Query("What is 1+2?", prompt="<system>...<user>What is 1+2?<assistant>")
    assert prm_prompt(query, "chat") == [{"role": "user", "content": "What is 1+2?"}]
    assert prm_prompt(query, "prompt") == query.prompt
    with pytest.raises(InputError, match="needs the policy's prompt"):
        prm_prompt(Query("p"), "prompt")
    with pytest.raises(InputError, match="unknown prm_context"):
        prm_prompt(query, "system")


# ----------------------------------------------------------------------------------------------
# records and options


def test_record_round_trip_and_defaults(tmp_path):
    write_prm_record(tmp_path, base="b", reference="r", beta=0.05, step_mode="newline")
    record = read_prm_record(tmp_path)
    assert (record.base, record.reference, record.beta, record.coef, record.step_mode, record.append_eos) == \
        ("b", "r", 0.05, 0.05, "newline", True)  # the inference coef defaults to beta
    # an older record with only reference / beta / append_eos still reads
    (tmp_path / reading.RECORD_FILE).write_text(json.dumps({"reference": "r", "beta": 0.5, "append_eos": False}))
    old = read_prm_record(tmp_path)
    assert (old.coef, old.step_mode, old.append_eos) == (0.5, "auto", False)
    (tmp_path / reading.RECORD_FILE).write_text(json.dumps({"reference": "r", "coef": -1}))
    with pytest.raises(InputError, match=r"implicit_prm.json: field 'coef': coef must be a positive"):
        read_prm_record(tmp_path)
    assert read_prm_record(tmp_path / "missing") is None


def test_eurusprm_reads_as_its_card():
    settings = resolve_reading(PRMReadingArguments(prm="PRIME-RL/EurusPRM-Stage1"))
    assert (settings.prm_ref, settings.coef, settings.step_mode, settings.prm_context) == \
        ("Qwen/Qwen2.5-Math-7B-Instruct", 0.001, "eurus", "chat")
    assert KNOWN_PRMS["PRIME-RL/EurusPRM-Stage1"].beta == 0.05
    # options override the card
    override = resolve_reading(PRMReadingArguments(prm="PRIME-RL/EurusPRM-Stage1", coef=0.05, step_mode="newline"))
    assert (override.coef, override.step_mode) == (0.05, "newline")


def test_resolve_needs_a_reference(tmp_path):
    with pytest.raises(InputError, match="reference"):
        resolve_reading(PRMReadingArguments(prm=str(tmp_path)))
    settings = resolve_reading(PRMReadingArguments(prm=str(tmp_path), prm_ref="ref"))
    assert (settings.coef, settings.step_mode) == (0.05, "auto")


@pytest.mark.parametrize("argv, message", [
    (["--coef", "0"], "coef must be a positive number"),
    (["--coef", "-0.5"], "coef must be a positive number"),
    (["--aggregate", "max"], "unknown aggregate 'max'"),
    (["--step_mode", "sentences"], "unknown step mode 'sentences'"),
    (["--prm_context", "system"], "unknown prm_context"),
])
def test_bad_options_are_one_line_input_errors(argv, message):
    with pytest.raises(InputError, match=message) as error:
        parse_config([PRMReadingArguments], argv, prog="t", description="d")
    assert "\n" not in str(error.value)


def test_old_option_names_still_parse_with_a_warning(capsys):
    argv = ["--ref", "r", "--beta", "0.01", "--steps", "newline", "--bon_aggregate", "min"]
    args, *_ = parse_config([PRMReadingArguments], argv, prog="t", description="d")
    assert (args.prm_ref, args.coef, args.step_mode, args.aggregates) == ("r", 0.01, "newline", ["min_step"])
    warnings = capsys.readouterr().err
    for old, new in (("--ref", "--prm_ref"), ("--beta", "--coef"), ("--steps", "--step_mode")):
        assert f"'{old}' (command-line option) is deprecated" in warnings and f"use '{new}'" in warnings


# ----------------------------------------------------------------------------------------------
# EurusPRM's model-card read-out, reproduced independently

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def chatml_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with a ChatML template whose end-of-turn token is its EOS, as in
    Qwen2.5-Math-7B-Instruct, EurusPRM's base."""
    words = ["<|im_start|>", "<|im_end|>", "user", "assistant", "Compute", "Step", ":", "\\boxed{"]
    symbols = list("0123456789") + ["+", "-", "=", " ", "{", "}", "\n"]
    vocab = {token: index for index, token in enumerate(["<pad>", "<unk>", *words, *symbols])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(
        Regex("|".join(map(re.escape, words + symbols))), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        eos_token="<|im_end|>")
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_lm(vocab_size: int, seed: int) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256)
    return Qwen2ForCausalLM(config).eval()


def card_read_out(model, ref, tokenizer, query: str, steps: list[str], coef: float):
    """The model card's read-out, written out from its description: the conversation through the
    chat template; the end of step k found by tokenizing the conversation cut after k steps
    (stripped, a blank line added between steps) and stepping back two tokens; coef times the
    per-token log-ratio from the first boundary on, summed cumulatively and read at the step ends.
    Returns the values read, the conversation's ids, the boundaries and the per-position terms
    (position j holds the term of token j + 1)."""
    def conversation(answer: str, tokenize: bool):
        return tokenizer.apply_chat_template([{"role": "user", "content": query},
                                              {"role": "assistant", "content": answer}],
                                             tokenize=tokenize, add_generation_prompt=False,
                                             **({"return_dict": True} if tokenize else {}))

    ids = torch.tensor([list(conversation("\n\n".join(steps), True)["input_ids"])])
    ends = []
    for k in range(len(steps) + 1):
        text = conversation("\n\n".join(steps[:k]), False).strip()
        if 0 < k < len(steps):
            text += "\n\n"
        ends.append(len(tokenizer.encode(text, add_special_tokens=False)) - 2)

    def logps(lm):
        with torch.no_grad():
            logits = lm(input_ids=ids).logits[:, :-1]
        return logits.log_softmax(-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)

    mask = torch.tensor([[0] * ends[0] + [1] * (ids.shape[1] - ends[0])])[:, 1:]
    terms = (coef * (logps(model) - logps(ref)) * mask)[0]
    return terms.cumsum(-1)[ends[1:]].tolist(), ids[0].tolist(), ends, terms.tolist()


def test_min_q_reproduces_the_model_card_read_out():
    tokenizer = chatml_tokenizer()
    prm, ref = tiny_lm(len(tokenizer), 1), tiny_lm(len(tokenizer), 2)
    reader = ImplicitPRM(prm, ref, tokenizer, coef=0.001, step_mode="eurus")
    query = "Compute 1+2+4"
    responses = ["Step 1: 1+2=3\nStep 2: 3+4=7\nStep 3: \\boxed{7}", "Step 1: 1+2=3 Step 2: 3+4=8",
                 "\\boxed{7}"]
    prompt = prm_prompt(Query(query), "chat")
    results = reader.rewards([prompt] * len(responses), responses)
    scores = reader.score([prompt] * len(responses), responses, aggregate="min_q")
    for result, score in zip(results, scores):
        steps = [text.removesuffix("\n\n") for text in result.steps.texts]
        card, ids, ends, terms = card_read_out(prm, ref, tokenizer, query, steps, 0.001)
        # The card's read-out differs from Q_k, the value after step k and its blank line, in two
        # tokens, both of which it adds: its first boundary is the newline that ends "assistant\n",
        # a prompt token whose term shifts every Q of a problem alike; and at a step that is not the
        # last it reads one token late, adding the first token of the next step ("Step").
        prompt_term = terms[ends[0] - 1]
        late = [terms[end] for end in ends[1:-1]] + [0.0]
        assert [tokenizer.decode([ids[end + 1]]) for end in ends[1:-1]] == ["Step"] * (len(steps) - 1)
        assert result.q_values == pytest.approx(
            [value - prompt_term - extra for value, extra in zip(card, late)], abs=1e-9)
        assert score == pytest.approx(min(result.q_values), abs=1e-12)
        # the last value, the sequence reward with the EOS (<|im_end|>), is the card's up to the shift
        assert result.sequence_reward == pytest.approx(card[-1] - prompt_term, abs=1e-9)
    assert [len(result.step_rewards) for result in results] == [3, 2, 1]
