"""``prime-bon sample`` and ``prime-bon rerank`` end to end on tiny random models, and their
one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import Qwen2ForSequenceClassification, Qwen2ForTokenClassification

from primekit import toy
from primekit.cli import dispatch

CANDIDATES = [
    {"id": "a", "problem": "Compute 1+2+4\n", "answer": "7",
     "candidates": ["1+2=3\n3+4=7\n\\boxed{7}", "\\boxed{8}", "1+2=3\n3+4=8\n\\boxed{8}", "\\boxed{7}"]},
    {"id": "b", "problem": "Compute 5-1+2\n", "answer": "6",
     "candidates": ["5-1=4\n4+2=6\n\\boxed{6}", "\\boxed{6}", "\\boxed{5}", "5-1=3\n3+2=5\n\\boxed{5}"]},
]


def _save(model, path):
    model.save_pretrained(path)
    toy.build_tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bon-models")
    config = toy.tiny_qwen2_config().to_dict()
    config_class = toy.tiny_qwen2_config().__class__
    return {"policy": _save(toy.random_model(0), root / "policy"),
            "prm": _save(toy.random_model(1), root / "prm"),
            "ref": _save(toy.random_model(2), root / "ref"),
            "step_prm": _save(Qwen2ForTokenClassification(config_class(**{**config, "num_labels": 2})),
                              root / "step_prm"),
            "orm": _save(Qwen2ForSequenceClassification(config_class(**{**config, "num_labels": 1})),
                         root / "orm")}


@pytest.fixture
def candidates_file(tmp_path):
    path = tmp_path / "cands.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CANDIDATES))
    return path


def test_rerank_end_to_end_then_rerun_without_models(candidates_file, models, tmp_path, monkeypatch):
    out = tmp_path / "out"
    argv = ["rerank", str(candidates_file), "--prm", models["prm"], "--prm_ref", models["ref"],
            "--step_prm", models["step_prm"], "--orm", models["orm"], "--out", str(out),
            "--aggregate", "min_q,last", "--dtype", "float32", "--bootstrap_resamples", "50"]
    assert dispatch("prime-bon", argv) == 0
    for name in ("table.md", "curve.png", "summary.json", "reranked.jsonl"):
        assert (out / name).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ns"] == [1, 2, 4]
    assert {"random", "majority", "oracle", "bon/implicit_prm/min_q", "vote/implicit_prm/min_q",
            "vote/implicit_prm/last", "bon/step_prm/last", "vote/step_prm/min_q", "bon/orm/min_q",
            "vote/orm"} <= set(summary["methods"])
    identity = summary["scorers"]["implicit_prm"]
    assert (identity["coef"], identity["step_mode"], identity["prm_context"]) == (0.05, "auto", "chat")
    # oracle at N=4: problem a and b both have a right candidate
    assert summary["methods"]["oracle"]["by_n"]["4"]["value"] == 1.0
    reranked = [json.loads(line) for line in (out / "reranked.jsonl").read_text().splitlines()]
    assert set(reranked[0]["step_scores"]) == {"implicit_prm", "step_prm", "orm"}
    assert len(reranked[0]["step_scores"]["implicit_prm"][0]) == 3  # three newline steps
    caches = list((tmp_path / "cands.jsonl.bon-cache").glob("*.jsonl"))
    assert len(caches) == 3

    # another aggregation and N: everything comes from the caches, no model is loaded
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded although every score is cached")

    monkeypatch.setattr("primekit.prm.implicit.ImplicitPRM.from_settings", no_model)
    monkeypatch.setattr("primekit.bon.scorers._load_classifier", no_model)
    argv = [a if a != "min_q,last" else "mean" for a in argv] + ["--n_max", "2"]
    assert dispatch("prime-bon", argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ns"] == [1, 2] and "bon/implicit_prm/mean" in summary["methods"]


def _one_line_error(capsys, argv) -> str:
    assert dispatch("prime-bon", argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("record, expected", [
    ({"problem": "q", "candidates": []}, "cands.jsonl:1: field 'candidates': empty list"),
    ({"problem": "q", "candidates": "one answer"}, "field 'candidates': expected list, got str"),
])
def test_bad_candidates_are_one_line_errors(tmp_path, capsys, record, expected):
    path = tmp_path / "cands.jsonl"
    path.write_text(json.dumps(record) + "\n")
    assert expected in _one_line_error(capsys, ["rerank", str(path)])


def test_missing_prm_path_is_a_one_line_error(candidates_file, capsys, tmp_path):
    err = _one_line_error(capsys, ["rerank", str(candidates_file), "--prm", str(tmp_path / "nope")])
    assert "--prm: model path does not exist" in err


def test_bad_options_are_one_line_errors(candidates_file, capsys):
    assert "unknown aggregate 'max'" in _one_line_error(
        capsys, ["rerank", str(candidates_file), "--aggregate", "max"])
    assert "coef must be a positive number" in _one_line_error(
        capsys, ["rerank", str(candidates_file), "--coef", "-1"])
    assert "unknown step mode 'lines'" in _one_line_error(
        capsys, ["rerank", str(candidates_file), "--step_mode", "lines"])
    assert "file not found" in _one_line_error(capsys, ["rerank", "missing.jsonl"])
    assert "--out is required" in _one_line_error(capsys, ["sample"])


def test_sample_writes_candidates_and_resumes(models, tmp_path, monkeypatch):
    out = tmp_path / "cands.jsonl"
    argv = ["sample", "--model", models["policy"], "--benchmark", "toy", "--limit", "2", "--n", "3",
            "--max_new_tokens", "6", "--dtype", "float32", "--out", str(out)]
    assert dispatch("prime-bon", argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["candidates"]) for r in rows] == [3, 3]
    assert rows[0]["prompt"].startswith("Compute ") and rows[0]["answer"]
    assert len(rows[0]["preds"]) == len(rows[0]["correct"]) == 3

    def no_generation(*args, **kwargs):
        raise AssertionError("every candidate exists; nothing should be generated")

    monkeypatch.setattr("primekit.eval.generate.make_generator", no_generation)
    assert dispatch("prime-bon", argv) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows


def test_toy_prm_is_trained_once_where_prime_prm_train_saves_it(tmp_path, monkeypatch):
    """``--prm toy`` trains the toy PRM with ``prime-prm train``'s defaults the first time, then
    reads the saved one."""
    from primekit.prm import toy_prm, training
    from primekit.prm.config import ImplicitPRMConfig

    runs = []

    def fake_train(config, model_args):
        runs.append((config.output_dir, model_args.model))
        Path(config.output_dir).mkdir(parents=True)
        (Path(config.output_dir) / "implicit_prm.json").write_text("{}")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(training, "train_prm", fake_train)
    assert toy_prm.ensure_toy_prm() == Path(ImplicitPRMConfig().output_dir)
    assert toy_prm.ensure_toy_prm() == Path(ImplicitPRMConfig().output_dir)
    assert runs == [(ImplicitPRMConfig().output_dir, None)]  # once, the toy policy, the default folder
