"""PRM training data: validation errors that name file, line and field; tokenization; collation."""

from __future__ import annotations

import json
import re

import pytest
import torch

from primekit import toy
from primekit.errors import InputError
from primekit.prm.data import (ImplicitPRMCollator, encode_response, eurus_stage1_sample, join_right_padded,
                               load_prm_datasets, read_outcome_samples, read_pairs, tokenize_outcome_samples,
                               truncate)
from primekit.prm.reading import render_prompt

GOOD = {"prompt": "Compute 1+2\n", "completion": "1+2=3\n\\boxed{3}", "label": 1}


def write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@pytest.mark.parametrize("bad, field, message", [
    ({"prompt": "Compute 1\n", "label": 1}, "completion", "missing"),
    ({"completion": "x", "label": 0}, "prompt", "missing"),
    ({**GOOD, "completion": "  \n"}, "completion", "empty response"),
    ({**GOOD, "completion": 7}, "completion", "expected str"),
    ({**GOOD, "label": "yes"}, "label", "expected 0 or 1"),
    ({**GOOD, "label": 2}, "label", "expected 0 or 1"),
    ({**GOOD, "label": 0.5}, "label", "expected 0 or 1"),
    ({**GOOD, "prompt": [{"role": "user"}]}, "prompt", "messages"),
])
def test_outcome_sample_errors_name_file_line_and_field(tmp_path, bad, field, message):
    path = write_lines(tmp_path / "train.jsonl", [GOOD, bad])
    with pytest.raises(InputError) as err:
        read_outcome_samples(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 2, field)
    assert message in str(err.value) and str(err.value).startswith(f"{path}:2: field '{field}'")


def test_malformed_json_line_and_missing_file(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [GOOD, GOOD, '{"prompt": "x", '])
    with pytest.raises(InputError, match=r"train\.jsonl:3: malformed JSON"):
        read_outcome_samples(path)
    with pytest.raises(InputError, match="file not found"):
        read_outcome_samples(tmp_path / "absent.jsonl")
    with pytest.raises(InputError, match="no samples"):
        read_outcome_samples(write_lines(tmp_path / "empty.jsonl", []))


def test_labels_accept_booleans_and_integral_floats(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [{**GOOD, "label": True}, {**GOOD, "label": 0.0}])
    assert [r["label"] for r in read_outcome_samples(path)] == [1, 0]


def test_pair_errors(tmp_path):
    good = {"prompt": "p", "chosen": "a", "rejected": "b"}
    path = write_lines(tmp_path / "pairs.jsonl", [good, {"prompt": "p", "chosen": "a"}])
    with pytest.raises(InputError, match=r"pairs\.jsonl:2: field 'rejected': missing"):
        read_pairs(path)
    path = write_lines(tmp_path / "pairs2.jsonl", [{**good, "chosen": ""}])
    with pytest.raises(InputError, match=r":1: field 'chosen': empty response"):
        read_pairs(path)
    assert read_pairs(write_lines(tmp_path / "ok.jsonl", [good])) == [good]


def test_encode_response_tokenizes_parts_separately_and_appends_eos():
    tokenizer = toy.build_tokenizer()
    encoded = encode_response(tokenizer, "Compute 1+2\n", "1+2=3", append_eos=True)
    # "Compute" " " "1" "+" "2" "\n" = 6 prompt tokens ; "1" "+" "2" "=" "3" + EOS = 6 response tokens
    assert len(encoded.prompt_ids) == 6
    assert encoded.response_ids[-1] == tokenizer.eos_token_id and len(encoded.response_ids) == 6
    assert encoded.offsets == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 5)]
    assert encode_response(tokenizer, "Compute 1\n", "1", append_eos=False).response_ids == [
        tokenizer.convert_tokens_to_ids("1")]


def test_chat_prompts_are_rendered_with_the_template():
    tokenizer = toy.build_tokenizer()  # its template concatenates the message contents
    assert render_prompt(tokenizer, [{"role": "user", "content": "Compute 1+2\n"}]) == "Compute 1+2\n"


def test_truncate_keeps_the_prompt_and_the_eos():
    # room 4 of max_length 6 after a 2-token prompt: without an EOS the first 4 tokens
    assert truncate([1, 2], [3, 4, 5, 6, 7], max_length=6) == [3, 4, 5, 6]
    # with one (OpenRLHF's CE dataset): the first 3 and the EOS written over the 4th
    assert truncate([1, 2], [3, 4, 5, 6, 99], max_length=6, eos_token_id=99) == [3, 4, 5, 99]
    assert truncate([1, 2], [3, 99], max_length=6, eos_token_id=99) == [3, 99]  # fits: unchanged
    assert truncate([1, 2], [3], max_length=None) == [3]
    # a prompt that leaves fewer than 3 tokens of room drops the sample (as OpenRLHF does)
    assert truncate([1, 2, 3, 4], [5, 6, 7], max_length=6) is None
    assert truncate([1, 2, 3], [5, 6, 7, 8], max_length=6, eos_token_id=99) == [5, 6, 99]


def test_tokenized_samples_keep_their_eos_when_cut():
    tokenizer = toy.build_tokenizer()
    records = [{"prompt": "Compute 1+2\n", "completion": "1+2=3\n\\boxed{3}", "label": 1}]
    rows = tokenize_outcome_samples(records, tokenizer, max_length=10, append_eos=True)
    # prompt: Compute, space, 1, +, 2, newline = 6 tokens; room 4: "1", "+", "2" and the EOS
    assert rows[0]["completion_ids"] == [tokenizer.convert_tokens_to_ids(t) for t in ["1", "+", "2", "<eos>"]]


@pytest.mark.parametrize("row, field, message", [
    ({"label": True}, "response", "missing"),
    ({"response": [{"role": "user", "content": "q"}], "label": True}, "response", "2 messages or more"),
    ({"response": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}], "label": 1},
     "response[1]", "the assistant's answer"),
    ({"response": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}], "label": 1},
     "response[1]", "empty response"),
    ({"response": [{"role": "user"}, {"role": "assistant", "content": "a"}], "label": 1},
     "response[0]", "{role, content}"),
    ({"response": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "label": "yes"},
     "label", "expected 0 or 1"),
])
def test_eurus_stage1_rows_name_file_line_and_field(row, field, message):
    with pytest.raises(InputError, match=re.escape(f"data.jsonl:3: field '{field}': ") + ".*" + re.escape(message)):
        eurus_stage1_sample(row, path="data.jsonl", line=3)


def test_eurus_stage1_row_by_hand():
    row = {"response": [{"role": "system", "content": "s"}, {"role": "user", "content": "1+1?"},
                        {"role": "assistant", "content": "2"}], "label": False, "dataset": "x"}
    assert eurus_stage1_sample(row, path="d", line=1) == {
        "prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "1+1?"}],
        "completion": "2", "label": 0}


def test_join_right_padded_hand_example():
    batch = join_right_padded([[1, 2], [3]], [[4], [5, 6, 7]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 4, 0], [3, 5, 6, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["completion_mask"].tolist() == [[0, 0, 1, 0], [0, 1, 1, 1]]


def test_collator_outcome_kto_and_pairs():
    rows = [{"prompt_ids": [1], "completion_ids": [2, 3], "label": 1},
            {"prompt_ids": [4, 5], "completion_ids": [6], "label": 0},
            {"prompt_ids": [7], "completion_ids": [8], "label": 1}]
    batch = ImplicitPRMCollator(pad_token_id=0, kto_kl=True)(rows)
    assert batch["labels"].tolist() == [1.0, 0.0, 1.0]
    # KL rows: prompt i with completion i-1 (prompt 0 with the last one)
    assert batch["kl_input_ids"].tolist() == [[1, 8, 0, 0], [4, 5, 2, 3], [7, 6, 0, 0]]
    assert batch["kl_completion_mask"].tolist() == [[0, 1, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0]]
    pairs = [{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3, 4],
              "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0},
             {"prompt_ids": [5], "chosen_ids": [6], "rejected_ids": [7],
              "ref_chosen_logps": -3.0, "ref_rejected_logps": -4.0}]
    batch = ImplicitPRMCollator(pad_token_id=0)(pairs)
    assert batch["input_ids"].tolist() == [[1, 2, 0], [5, 6, 0], [1, 3, 4], [5, 7, 0]]  # chosen, then rejected
    assert batch["ref_logps"].tolist() == [-1.0, -3.0, -2.0, -4.0]


def test_load_prm_datasets_splits_and_tokenizes(tmp_path):
    records = [{"prompt": f"Compute {i}\n", "completion": f"\\boxed{{{i}}}", "label": i % 2} for i in range(20)]
    path = write_lines(tmp_path / "train.jsonl", records)
    tokenizer = toy.build_tokenizer()
    train, held_out = load_prm_datasets(tokenizer, pairs=False, train_file=path, eval_file=None,
                                        eval_fraction=0.1, max_length=64, append_eos=True, seed=0)
    assert (len(train), len(held_out)) == (18, 2)
    assert set(train.column_names) == {"prompt_ids", "completion_ids", "label"}
    again, _ = load_prm_datasets(tokenizer, pairs=False, train_file=path, eval_file=None,
                                 eval_fraction=0.1, max_length=64, append_eos=True, seed=0)
    assert train["completion_ids"] == again["completion_ids"]  # the split is seeded
    whole, none = load_prm_datasets(tokenizer, pairs=False, train_file=path, eval_file=None,
                                    eval_fraction=0.0, max_length=64, append_eos=True, seed=0)
    assert len(whole) == 20 and none is None
    with pytest.raises(InputError, match="no training sample fits"):
        load_prm_datasets(tokenizer, pairs=False, train_file=path, eval_file=None, eval_fraction=0.0,
                          max_length=2, append_eos=True, seed=0)


def test_collated_batch_is_long_tensors():
    batch = ImplicitPRMCollator(pad_token_id=0)([{"prompt_ids": [1], "completion_ids": [2], "label": 1}])
    assert batch["input_ids"].dtype == torch.long and batch["labels"].dtype == torch.float32
