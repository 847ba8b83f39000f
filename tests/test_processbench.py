"""ProcessBench: first-error prediction, F1, threshold tuning against hand-computed values, the
shared data, and the CLI on tiny implicit PRMs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from primekit import toy
from primekit.cli import dispatch
from primekit.errors import InputError
from primekit.eval import processbench as pb


def test_first_error_step():
    rewards = [0.5, -0.2, 0.3]
    assert pb.first_error_step(rewards, threshold=0.0, aggregate="min_step") == 1
    assert pb.first_error_step(rewards, threshold=-0.5, aggregate="min_step") == -1
    assert pb.first_error_step(rewards, threshold=0.6, aggregate="min_step") == 0
    # running Q (the default): 0.5, 0.3, 0.6 -> first below 0.4 is step 1; nothing is below 0.0
    assert pb.first_error_step(rewards, threshold=0.4) == 1
    assert pb.first_error_step(rewards, threshold=0.0) == -1
    with pytest.raises(InputError):
        pb.first_error_step(rewards, 0.0, aggregate="last")


def test_score_predictions_hand_f1():
    labels = [-1, -1, 2, 0, 1]
    predictions = [-1, 0, 2, 1, 1]
    score = pb.score_predictions(labels, predictions)
    # erroneous: label 2 found, label 0 missed (said 1), label 1 found -> 2/3
    # error-free: first right, second flagged step 0 -> 1/2
    # F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7
    assert score.error_accuracy == pytest.approx(2 / 3)
    assert score.correct_accuracy == pytest.approx(1 / 2)
    assert score.f1 == pytest.approx(4 / 7)
    assert (score.num_error, score.num_correct) == (3, 2)
    only_errors = pb.score_predictions([0, 1], [0, -1])
    assert only_errors.correct_accuracy is None and only_errors.f1 is None


def test_tune_threshold_hand_example():
    rewards = [[0.9, 0.8], [0.9, -0.5, 0.7], [0.1, 0.6], [0.7, 0.4]]
    labels = [-1, 1, 0, -1]
    # distinct values -0.5 0.1 0.4 0.6 0.7 0.8 0.9; a threshold in (0.1, 0.4] flags -0.5 and 0.1
    # only: sample 2 -> step 1 (right), sample 3 -> step 0 (right), samples 1 and 4 unflagged
    # (right): F1 = 1. The first candidate there is the midpoint (0.1 + 0.4) / 2 = 0.25.
    threshold, f1 = pb.tune_threshold(rewards, labels, aggregate="min_step")
    assert threshold == pytest.approx(0.25) and f1 == pytest.approx(1.0)
    score = pb.evaluate_split([pb.ProcessBenchSample(str(i), "", ("",) * len(r), l, "x")
                               for i, (r, l) in enumerate(zip(rewards, labels))], rewards, threshold,
                              aggregate="min_step")
    assert score.f1 == pytest.approx(1.0)
    # with running Q: Q = [0.9 1.7], [0.9 0.4 1.1], [0.1 0.7], [0.7 1.1]; sample 2 needs
    # 0.4 < t <= 0.9, sample 3 t > 0.1, sample 1 t <= 0.9 and sample 4 t <= 0.7: all four are
    # right for t in (0.4, 0.7], whose candidate is the midpoint (0.4 + 0.7) / 2 = 0.55
    threshold, f1 = pb.tune_threshold(rewards, labels, aggregate="min_q")
    assert threshold == pytest.approx(0.55) and f1 == pytest.approx(1.0)


def test_tune_threshold_chunks_agree():
    rewards = [[0.3, -0.1, 0.2], [0.5], [-0.4, 0.9], [0.2, 0.2, -0.3]]
    labels = [1, -1, 0, -1]
    assert pb.tune_threshold(rewards, labels, chunk=1) == pb.tune_threshold(rewards, labels, chunk=64)


def test_load_split_reads_the_shared_data():
    samples = pb.load_split("gsm8k")
    # 207 erroneous and 193 error-free samples, as in the ProcessBench paper
    assert len(samples) == 400 and sum(s.label == -1 for s in samples) == 193
    assert samples[0].id == "gsm8k-0" and samples[0].label == 1 and len(samples[0].steps) > 1
    # a limit keeps a balanced head: 3 erroneous and 2 error-free samples, in file order
    limited = pb.load_split("gsm8k", limit=5)
    assert [s.label == -1 for s in limited].count(True) == 2 and len(limited) == 5
    assert len(pb.load_split("math")) == 1000
    with pytest.raises(InputError, match="unknown ProcessBench split"):
        pb.load_split("aime")


def test_load_split_names_bad_records(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIMEKIT_DATA", str(tmp_path))
    (tmp_path / "processbench").mkdir()
    (tmp_path / "processbench" / "math.json").write_text(json.dumps(
        [{"id": "m-0", "problem": "p", "steps": ["a", "b"], "label": 5}]))
    with pytest.raises(InputError, match=r"math.json\[0\]: field 'label': expected -1 or a step"):
        pb.load_split("math")
    with pytest.raises(InputError, match="not in the data folder"):
        pb.load_split("omnimath")
    assert pb.available_splits() == ["math"]


class FakePRM:
    """Records what it reads and gives reward -1 to steps that mention 'wrong'."""

    def __init__(self):
        self.calls = []

    def read(self, prompts, steps):
        self.calls.append((prompts, [item.text for item in steps]))
        return [SimpleNamespace(step_rewards=[-1.0 if "wrong" in text else 1.0 for text in item.texts])
                for item in steps]


def test_known_steps_are_numbered_and_read_whole():
    prm = FakePRM()
    sample = pb.ProcessBenchSample("s", "2+2?", ("a\n\nb ", "wrong c", "d"), 1, "x")
    assert pb.implicit_prm_step_rewards(prm, ["<2+2?>"], [sample]) == [[1.0, -1.0, 1.0]]
    # "Step i: " before each step, a blank line between them, no re-splitting of "a\n\nb "
    assert prm.calls == [(["<2+2?>"], ["Step 1: a\n\nb \n\nStep 2: wrong c\n\nStep 3: d"])]
    assert pb.score_steps(sample, lambda problem, steps: [0.0] * len(steps)) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="2 rewards for 3 steps"):
        pb.score_steps(sample, lambda problem, steps: [0.0, 0.0])


@pytest.fixture(scope="module")
def tiny_prm_pair(tmp_path_factory):
    folders = []
    for seed in (0, 1):
        path = tmp_path_factory.mktemp(f"tiny-{seed}")
        toy.random_model(seed=seed).save_pretrained(path)
        toy.build_tokenizer().save_pretrained(path)
        folders.append(str(path))
    return folders


def test_processbench_command_on_tiny_models(tiny_prm_pair, tmp_path, monkeypatch, capsys):
    prm, ref = tiny_prm_pair
    out = tmp_path / "pb"
    argv = ["processbench", "--prm", prm, "--prm_ref", ref, "--splits", "gsm8k", "--limit", "2",
            "--out", str(out)]
    assert dispatch("prime-eval", argv) == 0
    report = json.loads((out / "processbench.json").read_text())
    assert report["tuned_on"] == "gsm8k" and set(report["splits"]) == {"gsm8k"}
    assert (report["aggregate"], report["coef"]) == ("min_q", 0.05)  # Q values; no record: 0.05
    score = report["splits"]["gsm8k"]
    assert (score["num_error"], score["num_correct"]) == (1, 1)
    # tuned on the same two samples: the best threshold scores what tuning reported
    assert score["f1"] == pytest.approx(report["tuned_f1"])
    cached = [json.loads(line) for line in (out / "step_rewards.jsonl").read_text().splitlines()]
    samples = pb.load_split("gsm8k", limit=2)
    assert [len(r["step_rewards"]) for r in cached] == [len(s.steps) for s in samples]

    import primekit.prm.implicit

    def no_model(*args, **kwargs):
        raise AssertionError("the PRM was loaded although every sample was scored")

    monkeypatch.setattr(primekit.prm.implicit.ImplicitPRM, "from_settings", no_model)
    assert dispatch("prime-eval", argv + ["--threshold", "0.0"]) == 0
    assert json.loads((out / "processbench.json").read_text())["threshold"] == 0.0
    capsys.readouterr()
    assert dispatch("prime-eval", ["processbench", "--out", str(out)]) == 2
    assert "--prm and --out are required" in capsys.readouterr().err
    assert dispatch("prime-eval", argv + ["--aggregate", "last"]) == 2
    assert "aggregate must be one of min_step, min_q" in capsys.readouterr().err


def test_processbench_reads_with_the_recorded_coefficient(tiny_prm_pair, tmp_path):
    """The PRM's recorded coefficient scales the step rewards (it used to be overridden by 0.05)."""
    import shutil

    from primekit.prm.reading import write_prm_record

    prm, ref = tiny_prm_pair
    recorded = tmp_path / "prm"
    shutil.copytree(prm, recorded)
    write_prm_record(recorded, base=ref, reference=ref, beta=0.05, coef=0.5)
    common = ["processbench", "--splits", "gsm8k", "--limit", "2", "--threshold", "0.0"]
    assert dispatch("prime-eval", common + ["--prm", str(recorded), "--out", str(tmp_path / "a")]) == 0
    assert dispatch("prime-eval", common + ["--prm", prm, "--prm_ref", ref, "--coef", "0.05",
                                            "--out", str(tmp_path / "b")]) == 0

    def rewards(folder):
        return [json.loads(line)["step_rewards"] for line in (tmp_path / folder / "step_rewards.jsonl").read_text().splitlines()]

    assert json.loads((tmp_path / "a" / "processbench.json").read_text())["coef"] == 0.5
    for ten_times, once in zip(rewards("a"), rewards("b")):
        assert ten_times == pytest.approx([10 * value for value in once], rel=1e-4, abs=1e-9)
