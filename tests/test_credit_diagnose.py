"""`prime-rl diagnose` on tiny local models and a hand-made labelled file; labels and groups by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from primekit import toy
from primekit.cli import dispatch
from primekit.rl.credit import NO_ERROR_LABEL, UNKNOWN_ERROR_LABEL
from primekit.rl.diagnose import LabelledResponse, pseudo_groups, toy_label

STEPS = ["3+4=7", "7+5=12", "\\boxed{12}"]
ROWS = [{"problem": "Compute 3+4+5\n", "steps": ["3+4=8", "8+5=13", "\\boxed{13}"], "label": 0,
         "final_answer_correct": False},
        {"problem": "Compute 3+4+5\n", "steps": STEPS, "label": -1, "final_answer_correct": True},
        {"problem": "Compute 3+4+5\n", "steps": ["3+4=7", "7+5=13", "\\boxed{13}"], "label": 1,
         "final_answer_correct": False},
        {"problem": "Compute 3+4+5\n", "steps": STEPS, "label": -1, "final_answer_correct": True}]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-policy")
    toy.random_model(0).save_pretrained(path)
    toy.build_tokenizer().save_pretrained(path)
    return path


def test_toy_labels_are_the_first_wrong_line():
    assert toy_label("Compute 3+4+5\n", "3+4=7\n7+5=13\n\\boxed{13}", False) == 1
    assert toy_label("Compute 3+4+5\n", "3+4=8\n8+5=13\n\\boxed{13}", False) == 0
    assert toy_label("Compute 3+4+5\n", "3+4=7\n7+5=12\n\\boxed{12}", True) == NO_ERROR_LABEL
    assert toy_label("Compute 3+4+5\n", "\\boxed{11}", False) == UNKNOWN_ERROR_LABEL  # no worked steps
    assert toy_label("Compute 3+4+5\n", "\\boxed{12}", True) == NO_ERROR_LABEL


def test_pseudo_groups_alternate_outcomes_and_drop_a_partial_group():
    def response(outcome: float, name: str) -> LabelledResponse:
        return LabelledResponse(name, name, ((0, 1),), NO_ERROR_LABEL if outcome else 0, outcome)

    rows = [response(0, "w1"), response(0, "w2"), response(0, "w3"), response(1, "r1"), response(1, "r2")]
    assert [r.text for r in pseudo_groups(rows, 2)] == ["w1", "r1", "w2", "r2"]
    assert [r.text for r in pseudo_groups(rows, 3)] == ["w1", "r1", "w2"]


def test_diagnose_runs_on_a_labelled_file_with_a_prm(tmp_path, tiny_model, capsys):
    data = tmp_path / "labelled.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    output = tmp_path / "credit.json"
    # the PRM is the policy itself read against itself: q = 0, so PRIME must equal RLOO
    code = dispatch("prime-rl", ["diagnose", "--data", str(data), "--model", str(tiny_model), "--prm", str(tiny_model),
                                 "--prm_ref", str(tiny_model), "--group_size", "2", "--snr_mini_batch", "2",
                                 "--snr_resamples", "200", "--output", str(output)])
    out, _ = capsys.readouterr()
    assert code == 0 and "| RLOO (outcome only) |" in out
    result = json.loads(output.read_text())
    assert (result["responses"], result["groups"], result["with_labelled_error"], result["error_free"]) == (4, 2, 2, 2)
    rloo, silent, perfect = (result["schemes"][name] for name in
                             ("RLOO (outcome only)", f"PRIME, PRM {tiny_model.name}", "PRIME, perfect PRM"))
    assert silent["weight_shares"] == pytest.approx(rloo["weight_shares"])
    assert silent["parameter_cosine_with_perfect"] == pytest.approx(rloo["parameter_cosine_with_perfect"], abs=1e-5)
    assert perfect["logit_cosine_with_perfect"] == pytest.approx(1.0)
    assert perfect["parameter_cosine_with_perfect"] == pytest.approx(1.0, abs=1e-5)
    assert sum(rloo["weight_shares"]) == pytest.approx(1.0)
    # all four responses have the same length, so whitening shifts nothing: RLOO pushes no right one down
    assert rloo["weight_shares"][0] == 0
    assert perfect["gradient_snr"] > 0


def test_diagnose_bad_input_is_one_line(tmp_path, tiny_model, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({**ROWS[0], "label": 7}) + "\n")
    code = dispatch("prime-rl", ["diagnose", "--data", str(data), "--model", str(tiny_model)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "bad.jsonl[0]" in err and "'label'" in err
    code = dispatch("prime-rl", ["diagnose", "--group_size", "1"])
    assert code == 2 and "group_size" in capsys.readouterr().err


def test_diagnose_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        dispatch("prime-rl", ["diagnose", "--help"])
    out = capsys.readouterr().out
    for option in ("--data", "--prm", "--perfect_penalty", "--uncertain_below", "--snr_mini_batch",
                   "--max_gradient_parameters", "--filter_accuracy"):
        assert option in out


def test_diagnose_reads_the_toy_policys_own_slips(tmp_path, capsys):
    """The default world's cached policy samples held-out problems and each wrong worked response's
    first wrong line is found; every scheme's shares add up, the perfect PRM agrees with itself."""
    output = tmp_path / "toy.json"
    code = dispatch("prime-rl", ["diagnose", "--data", "toy", "--problems", "12", "--max_gradient_parameters", "0",
                                 "--filter_accuracy", "false", "--output", str(output)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(output.read_text())
    assert result["sampled_responses"] == 48 and result["responses"] == 48
    assert result["with_labelled_error"] >= 1 and result["with_labelled_error"] + result["error_free"] <= 48
    for scheme in result["schemes"].values():
        assert sum(scheme["weight_shares"]) == pytest.approx(1.0)
    assert result["schemes"]["PRIME, perfect PRM"]["logit_cosine_with_perfect"] == pytest.approx(1.0)
    assert result["schemes"]["RLOO (outcome only)"]["logit_cosine_with_perfect"] < 1.0
    assert result["schemes"]["PRIME, perfect PRM"]["gradient_snr"] is None  # parameter gradients were off


def test_diagnose_runs_on_processbench_rows_with_a_given_prm(tmp_path, qwen_shaped_path, capsys):
    """ProcessBench's human-labelled first errors, read with Qwen2's real tokenizer through the chat
    template, with a named PRM: every scheme is reported and its shares add up; a PRM that is its own
    reference gives q = 0, so its PRIME scheme is RLOO's."""
    output = tmp_path / "processbench.json"
    code = dispatch("prime-rl", ["diagnose", "--data", "processbench:math", "--max_rows", "8", "--group_size", "2",
                                 "--model", qwen_shaped_path, "--prm", qwen_shaped_path, "--prm_ref", qwen_shaped_path,
                                 "--prm_context", "chat", "--max_gradient_parameters", "0",
                                 "--filter_accuracy", "false", "--output", str(output)])
    assert code == 0, capsys.readouterr().err
    result = json.loads(output.read_text())
    assert result["responses"] == 8 and result["with_labelled_error"] == 4
    schemes = result["schemes"]
    assert set(schemes) == {"RLOO (outcome only)", f"PRIME, PRM {Path(qwen_shaped_path).name}", "PRIME, perfect PRM"}
    for scheme in schemes.values():
        assert sum(scheme["weight_shares"]) == pytest.approx(1.0)
    assert schemes[f"PRIME, PRM {Path(qwen_shaped_path).name}"]["weight_shares"] == pytest.approx(
        schemes["RLOO (outcome only)"]["weight_shares"])
