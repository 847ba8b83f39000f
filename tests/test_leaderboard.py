"""Leaderboard: tables from run summaries, published reference rows, extra metric columns, and
the HTML page rendered by headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from primekit.cli import dispatch
from primekit.eval import leaderboard as lb
from primekit.eval import runner


def metric(value: float) -> dict[str, float]:
    return {"value": value, "ci_low": max(0.0, value - 0.1), "ci_high": min(1.0, value + 0.1)}


def write_run(folder: Path, benchmarks: dict[str, dict[str, float]], n: int = 4,
              protocol: str = "primekit", temperature: float = 0.6) -> Path:
    """A run folder whose summary has the given metric values per benchmark."""
    summary = {"model": f"models/{folder.name}", "protocol": protocol, "date": "2026-01-02",
               "model_revision": "sha:0123456789ab", "primekit_version": "0.1.0", "benchmarks": {
        name: {"num_problems": 10, "samples_per_problem": n, "no_answer_rate": 0.0,
               "truncated_rate": 0.1, "metrics": {m: metric(v) for m, v in metrics.items()},
               "generation": {"n": n, "temperature": temperature,
                              "max_new_tokens": 8192 if name == "math500" else 4096}}
        for name, metrics in benchmarks.items()}}
    folder.mkdir(parents=True)
    runner.write_summary(folder, summary)
    return folder


@pytest.fixture()
def runs(tmp_path):
    five = {name: {"pass@1": 0.5, "avg@4": 0.5, "pass@4": 0.75, "maj@4": 0.6}
            for name in ("aime2024", "math500", "amc", "minerva_math", "olympiadbench")}
    five["math500"] = {"pass@1": 0.8, "avg@4": 0.8, "pass@4": 0.9, "maj@4": 0.85, "bon@16": 0.875}
    return [write_run(tmp_path / "runs" / "prime-step-100", five),
            write_run(tmp_path / "runs" / "sft", {"math500": {"pass@1": 0.125}, "gsm8k": {"pass@1": 0.25}},
                      n=1, protocol="prime", temperature=0.0)]


def test_reported_averages_are_the_mean_of_the_five_benchmarks():
    rows = {row.label: row for row in lb.reported_rows()}
    # (26.7 + 79.2 + 57.8 + 38.6 + 42.1) / 5 = 244.4 / 5 = 48.88, the published 48.9
    assert lb.prime_average(rows["Eurus-2-7B-PRIME"]) == pytest.approx(48.88)
    # (3.3 + 65.1 + 30.1 + 32.7 + 29.8) / 5 = 161.0 / 5 = 32.2
    assert lb.prime_average(rows["Eurus-2-7B-SFT"]) == pytest.approx(32.2)
    # (9.3 + 76.4 + 45.8 + 36.8 + 43.3) / 5 = 211.6 / 5 = 42.32; the paper prints 43.3
    assert lb.prime_average(rows["GPT-4o"]) == pytest.approx(42.32)
    assert lb.prime_average(lb.Row("partial", False, {"math500": 50.0})) is None


def test_metric_columns_are_ordered_by_family_then_k():
    names = ["maj@4", "bon@16", "pass@4", "avg@4", "pass@1", "maj@1", "bon@4"]
    assert sorted(names, key=lb.metric_sort_key) == [
        "pass@1", "avg@4", "pass@4", "maj@1", "maj@4", "bon@4", "bon@16"]


def test_tables(runs):
    summaries = [lb.load_summary(path) for path in runs]
    rows = lb.run_rows(summaries) + lb.reported_rows()
    header, body = lb.main_table(rows)
    assert header == ["Model", "protocol", "n", "T", "max tokens", "AIME 2024", "MATH-500", "AMC",
                      "Minerva Math", "OlympiadBench", "GSM8K", "PRIME avg", "date", "revision",
                      "primekit", "settings"]
    # run 1: 50, 80, 50, 50, 50 -> mean 280 / 5 = 56.0; run 2 lacks four of the five -> no average
    # run 1 has 4 samples per problem at T=0.6 (sampled) under the primekit protocol (flagged)
    assert body[0] == ["prime-step-100 (sampled)", "primekit‡", "4", "0.6", "4096/8192",
                       "50.0 (40.0–60.0)", "80.0 (70.0–90.0)", "50.0 (40.0–60.0)",
                       "50.0 (40.0–60.0)", "50.0 (40.0–60.0)", "–", "56.0", "2026-01-02",
                       "sha:0123456789ab", "0.1.0", "[1]"]
    assert body[1][:5] == ["sft", "prime", "1", "0", "4096/8192"]
    assert body[1][5:12] == ["–", "12.5 (2.5–22.5)", "–", "–", "–", "25.0 (15.0–35.0)", "–"]
    assert body[1][-1] == "[2]"
    # the published rows: as PRIME's README gives them, which does not say how each was made
    assert body[2] == ["Eurus-2-7B-PRIME (reported)", "published", "–", "–", "–", "26.7",
                       "79.2", "57.8", "38.6", "42.1", "–", "48.9", "2025-02", "–", "–", "published"]
    header, body = lb.details_table(summaries)
    assert header == ["Run", "Benchmark", "Problems", "n", "pass@1", "avg@4", "pass@4", "maj@4",
                      "bon@16", "Truncated %"]
    math_row = next(r for r in body if r[:2] == ["prime-step-100", "MATH-500"])
    assert math_row[4] == "80.0 (70.0–90.0)" and math_row[8] == "87.5 (77.5–97.5)"
    assert next(r for r in body if r[:2] == ["sft", "GSM8K"])[5:9] == ["–"] * 4


def test_runner_summaries_load(tmp_path):
    records = [{"benchmark": "toy", "problem_id": "a", "sample_index": 0, "correct": True, "pred": "1"},
               {"benchmark": "toy", "problem_id": "b", "sample_index": 0, "correct": False, "pred": "2"}]
    runner.write_summary(tmp_path, {"benchmarks": {"toy": runner.benchmark_summary(["a", "b"], records, 1)}})
    label, summary = lb.load_summary(tmp_path)
    assert label == tmp_path.name
    assert lb.run_rows([(label, summary)])[0].values == {"toy": 50.0}


def test_report_files_are_self_contained(runs, tmp_path):
    written = lb.write_leaderboard([str(p) for p in runs], tmp_path / "report")
    assert set(written) == {"leaderboard.md", "leaderboard.html", "pass1.png", "scaling.png"}
    markdown = written["leaderboard.md"].read_text()
    assert ("| GPT-4o (reported) | published | – | – | – | 9.3 | 76.4 | 45.8 | 36.8 | 43.3 | – "
            "| 42.3 | 2025-02 | – | – | published |") in markdown
    assert "as published in PRIME's README" in markdown and "## Settings" in markdown
    assert "bon@16" in markdown
    page = written["leaderboard.html"].read_text()
    assert "<script" not in page and "<link" not in page and "http" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert written["pass1.png"].read_bytes().startswith(b"\x89PNG")


class TableRows(HTMLParser):
    """Text of each table cell, by table id and row."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.row_classes: dict[str, list[str]] = {}
        self.table = self.cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.table = attrs.get("id")
            self.tables[self.table], self.row_classes[self.table] = [], []
        elif tag == "tr" and self.table and attrs.get("class"):
            self.tables[self.table].append([])
            self.row_classes[self.table].append(attrs["class"])
        elif tag == "td":
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self.cell is not None:
            self.tables[self.table][-1].append(self.cell)
            self.cell = None
        elif tag == "table":
            self.table = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (make chromium)")
def test_html_renders_in_headless_chromium(runs, tmp_path):
    page = lb.write_leaderboard([str(p) for p in runs], tmp_path / "report")["leaderboard.html"]
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.resolve().as_uri()], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    parser = TableRows()
    parser.feed(dom)
    rows = parser.tables["leaderboard"]
    assert [r[0] for r in rows] == ["prime-step-100 (sampled)", "sft", "Eurus-2-7B-PRIMEreported",
                                    "Eurus-2-7B-SFTreported", "Qwen2.5-Math-7B-Instructreported",
                                    "Llama-3.1-70B-Instructreported", "GPT-4oreported"]
    assert parser.row_classes["leaderboard"] == ["run"] * 2 + ["reported"] * 5
    assert rows[0][11] == "56.0"
    assert len(parser.tables["metrics"]) == 7  # 5 + 2 benchmark rows
    assert [r[-1] for r in rows] == ["[1]", "[2]"] + ["published"] * 5
    assert [r[:2] for r in parser.tables["settings"]] == [["[1]", "prime-step-100"], ["[2]", "sft"]]

    shot = tmp_path / "page.png"
    subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", page.resolve().as_uri()],
                   capture_output=True, timeout=60, check=True)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    # the charts are drawn: the lower half of the page is far from blank white
    assert pixels[800:, :, :3].std() > 0.05


def test_leaderboard_command(runs, tmp_path, capsys):
    pending = tmp_path / "runs" / "still-running"
    pending.mkdir()
    out = tmp_path / "report"
    assert dispatch("prime-eval", ["leaderboard", *map(str, runs), str(pending), "--out", str(out),
                                   "--no-reported"]) == 0
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "still-running" in captured.err
    assert "(reported)" not in (out / "leaderboard.md").read_text()
    broken = tmp_path / "broken" / "summary.json"
    broken.parent.mkdir()
    broken.write_text("{not json")
    assert dispatch("prime-eval", ["leaderboard", str(broken.parent), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "malformed JSON" in err and err.count("\n") == 1
    assert dispatch("prime-eval", ["leaderboard", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no summary here" in capsys.readouterr().err
    json.loads((runs[0] / runner.SUMMARY_FILE).read_text())  # inputs untouched


def test_interval_headings_follow_the_runs_confidence(tmp_path):
    run = write_run(tmp_path / "runs" / "narrow", {"math500": {"pass@1": 0.5}})
    summary = json.loads((run / runner.SUMMARY_FILE).read_text())
    runner.write_summary(run, {**summary, "confidence": 0.9})
    written = lb.write_leaderboard([str(run)], tmp_path / "report")
    markdown, page = written["leaderboard.md"].read_text(), written["leaderboard.html"].read_text()
    assert "## All metrics (%, 90% CI)" in markdown and "with its 90% interval" in markdown
    assert "All metrics (%, 90% CI)" in page and "95%" not in markdown


def full_summary(template_hash: str, problems: int = 500, stop=None) -> dict:
    return {"model": "Qwen/Qwen2.5-Math-7B-Instruct", "model_path": "Qwen/Qwen2.5-Math-7B-Instruct",
            "model_revision": "ef9926d75ab1", "protocol": "prime", "backend": "vllm", "dtype": "bfloat16",
            "seed": 0, "context_cap": 4096, "grader": "prime",
            "grader_details": {"name": "prime", "version": "PRIME-RL/PRIME@18ad596"},
            "chat_template_sha256": template_hash, "date": "2026-01-02", "primekit_version": "0.1.0",
            "benchmarks": {"math500": {"num_problems": problems, "total_problems": 500, "samples_per_problem": 1,
                                       "prompt_sha256": template_hash * 2, "metrics": {"pass@1": metric(0.8)},
                                       "generation": {"n": 1, "temperature": 0.0, "top_p": 1.0,
                                                      "max_new_tokens": 8192,
                                                      "stop": stop or ["\n###\nProblem: ", "<|eot_id|>"]}}}}


def test_runs_with_different_settings_never_share_a_settings_row(tmp_path):
    """Two runs alike in every context column but made with different chat templates get
    different settings rows; the settings say model@revision, problems run of all, back end,
    dtype, seed, top_p, stops, context cap, grader and version, prompt fingerprints."""
    paths = []
    for name, summary in [("a", full_summary("aaaa")), ("b", full_summary("bbbb")), ("c", full_summary("aaaa")),
                          ("d", full_summary("aaaa", problems=50))]:
        (tmp_path / name).mkdir()
        runner.write_summary(tmp_path / name, summary)
        paths.append(tmp_path / name)
    rows = lb.run_rows([lb.load_summary(p) for p in paths])
    header, body = lb.main_table(rows)
    assert [r[-1] for r in body] == ["[1]", "[2]", "[1]", "[3]"]
    assert [r[header.index("max tokens")] for r in body] == ["8192"] * 4  # alike in the context columns
    header, settings = lb.settings_table(rows)
    first = dict(zip(header, settings[0]))
    assert first["runs"] == "a, c"
    assert first["model"] == "Qwen/Qwen2.5-Math-7B-Instruct @ ef9926d75ab1"
    assert first["problems"] == "MATH-500: 500/500" and dict(zip(header, settings[2]))["problems"] == "MATH-500: 50/500"
    assert (first["backend"], first["dtype"], first["seed"], first["top_p"]) == ("vllm", "bfloat16", "0", "1")
    assert first["stops"] == "'\\n###\\nProblem: ', '<|eot_id|>'" and first["context cap"] == "4096"
    assert first["grader"] == "prime PRIME-RL/PRIME@18ad596"
    assert first["prompts"] == "aaaaaaaa; chat template aaaa"
    # a run of part of a benchmark: no PRIME average even where all five are there
    five = full_summary("aaaa", problems=50)
    five["benchmarks"] = {name: dict(five["benchmarks"]["math500"]) for name in
                          ("aime2024", "math500", "amc", "minerva_math", "olympiadbench")}
    assert lb.prime_average(lb.run_rows([("five", five)])[0]) is None
    five["benchmarks"] = {name: {**entry, "num_problems": 500} for name, entry in five["benchmarks"].items()}
    assert lb.prime_average(lb.run_rows([("five", five)])[0]) == pytest.approx(80.0)
