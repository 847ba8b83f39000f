"""Leaderboard from run folders: a Markdown table, a self-contained HTML page and PNG charts.

Input is the ``summary.json`` of each ``prime-eval run`` / ``prime-eval grade`` folder. The main
table has one row per run and one column per benchmark (pass@1 %, with its interval at the runs'
``--confidence``, 95% by default: Wilson for one right-or-wrong sample per problem, bootstrap
otherwise), next to reference rows with the
published numbers of PRIME's results table (marked "reported"). Context columns say how each
number was made: protocol, samples per problem, temperature, generation budget, date, model
revision and primekit version; a ``settings`` column points each run at a row of the settings
table (model and revision, problems run of the benchmark's total, back end, dtype, seed, top_p,
stops, context cap, grader and its version, a fingerprint of the exact prompts), so two runs
whose settings differ never share a row there. A run whose protocol is not the published rows'
is flagged, a sampled run is marked as such, and a run of only part of a benchmark gets no
average. Further tables list every metric of every run, and pass@1 per
level and per subject where a benchmark has them; metrics other tools add to a summary (for
example ``bon@16``, Best-of-16 accuracy after PRM reranking) get their own columns there.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from primekit.errors import InputError
from primekit.eval.protocols import get_protocol
from primekit.eval.runner import SUMMARY_FILE
from primekit.io import atomic_write_bytes, atomic_write_text
from primekit.problems import PRIME_BENCHMARKS, benchmark_title

# PRIME's results table (greedy pass@1, %): "AIME 2024" is the 2024 rows of aimo_validation_aime
# and "AMC" all of aimo_validation_amc, i.e. the aime2024 and amc benchmarks here.
REPORTED: dict[str, dict[str, float]] = {
    "Eurus-2-7B-PRIME": {"aime2024": 26.7, "math500": 79.2, "amc": 57.8, "minerva_math": 38.6,
                         "olympiadbench": 42.1},
    "Eurus-2-7B-SFT": {"aime2024": 3.3, "math500": 65.1, "amc": 30.1, "minerva_math": 32.7,
                       "olympiadbench": 29.8},
    "Qwen2.5-Math-7B-Instruct": {"aime2024": 13.3, "math500": 79.8, "amc": 50.6,
                                 "minerva_math": 34.6, "olympiadbench": 40.7},
    "Llama-3.1-70B-Instruct": {"aime2024": 16.7, "math500": 64.6, "amc": 30.1,
                               "minerva_math": 35.3, "olympiadbench": 31.9},
    "GPT-4o": {"aime2024": 9.3, "math500": 76.4, "amc": 45.8, "minerva_math": 36.8,
               "olympiadbench": 43.3},
}
# The published "Avg." where it is not the mean of the five numbers above (GPT-4o: 42.3).
REPORTED_AVG_NOTE = {"GPT-4o": 43.3}


def _joined(values: list[Any]) -> str:
    """Distinct values, smallest first, joined by "/" ("4096/8192"); "–" when none."""
    numbers = sorted({v for v in values if isinstance(v, (int, float))})
    distinct = [_plain(v) for v in numbers] + list(dict.fromkeys(
        _plain(v) for v in values if v is not None and not isinstance(v, (int, float))))
    return "/".join(distinct) if distinct else "–"


def _plain(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# The published rows are PRIME's README results table (arXiv 2502.01456, February 2025). How each
# model was evaluated is not stated there (GPT-4o and Llama-3.1-70B-Instruct least of all); the
# protocol a run is compared with is ``prime``, PRIME's own eval/ (sourced in
# primekit.eval.protocols), which made its own models' rows.
REPORTED_PROTOCOL = "prime"
REPORTED_SOURCE = "as published in PRIME's README"
_REPORTED_GENERATIONS = [get_protocol(REPORTED_PROTOCOL).generation(b) for b in PRIME_BENCHMARKS]
REPORTED_CONTEXT = {"protocol": "published", "n": "–", "T": "–", "max tokens": "–",
                    "date": "2025-02", "revision": "–", "primekit": "–", "settings": "published"}
MAIN_METRIC = "pass@1"
AVERAGE = "PRIME avg"
CONTEXT_COLUMNS = ("protocol", "n", "T", "max tokens")
PROVENANCE_COLUMNS = ("date", "revision", "primekit", "settings")
SETTINGS_COLUMNS = ("model", "problems", "backend", "dtype", "seed", "top_p", "stops", "context cap",
                    "grader", "prompts")
OTHER_PROTOCOL = "‡"
SAMPLED = "sampled"


@dataclass(frozen=True)
class Row:
    """One leaderboard row: ``values`` maps benchmark to pass@1 in percent, ``intervals`` to its
    interval in percent, ``context`` holds the context columns."""

    label: str
    reported: bool
    values: dict[str, float]
    model: str = ""
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    context: dict[str, str] = field(default_factory=dict)

    @property
    def sampled(self) -> bool:
        return self.context.get("T", "0") not in ("0", "0.0") or self.context.get("n", "1") != "1"


def load_summary(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """``(label, summary)`` of a run folder (label = folder name) or of a summary JSON file."""
    path = Path(path)
    file = path / SUMMARY_FILE if path.is_dir() else path
    if not file.is_file():
        raise InputError("no summary here (run `prime-eval run` or `prime-eval grade` first)",
                         path=file)
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(f"malformed JSON ({err.msg})", path=file, line=err.lineno) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("benchmarks"), dict):
        raise InputError("not a prime-eval summary", path=file, field="benchmarks")
    for name, entry in summary["benchmarks"].items():
        metrics = entry.get("metrics") if isinstance(entry, dict) else None
        if not isinstance(metrics, dict) or not all(
                isinstance(m, dict) and isinstance(m.get("value"), (int, float))
                for m in metrics.values()):
            raise InputError(f"benchmark '{name}' has no metrics of the form "
                             "{name: {value, ci_low, ci_high}}", path=file, field="benchmarks")
    label = summary.get("label") or (path.name if path.is_dir() else path.parent.name)
    return str(label), summary




def run_context(summary: dict[str, Any]) -> dict[str, str]:
    """The context columns of a run: from its summary and each benchmark's generation settings
    (older summaries without them show "–")."""
    entries = list(summary["benchmarks"].values())
    generations = [entry.get("generation", {}) for entry in entries]
    revision = summary.get("model_revision") or "–"
    return {"protocol": summary.get("protocol", "–"),
            **{f"setting:{name}": value for name, value in run_settings(summary).items()},
            "n": _joined([entry.get("samples_per_problem") for entry in entries]),
            "T": _joined([g.get("temperature") for g in generations]),
            "max tokens": _joined([g.get("max_new_tokens") for g in generations]),
            "date": summary.get("date", "–"), "revision": revision,
            "primekit": summary.get("primekit_version", "–")}


def _stops(stops: list[Any] | None) -> str:
    if not stops:
        return "none"
    shown = ", ".join(repr(stop) for stop in stops[:2])
    return shown + (f" and {len(stops) - 2} more" if len(stops) > 2 else "")


def run_settings(summary: dict[str, Any]) -> dict[str, str]:
    """What a run was made with beyond the context columns, one text per setting ("–" where an
    older summary does not say); benchmarks that differ are given by name."""
    entries = summary["benchmarks"]

    def per_benchmark(values: dict[str, str]) -> str:
        distinct = set(values.values())
        if len(distinct) <= 1:
            return next(iter(distinct), "–")
        return "; ".join(f"{benchmark_title(name)}: {value}" for name, value in values.items())

    grader = summary.get("grader_details") or {}
    grader_text = summary.get("grader", grader.get("name", "primekit"))
    version = grader.get("version") or summary.get("grader_version")
    cap = summary.get("context_cap")
    return {
        "model": f"{summary.get('model_path') or summary.get('model') or '–'}"
                 f" @ {summary.get('model_revision') or '–'}",
        "problems": "; ".join(f"{benchmark_title(name)}: {entry.get('num_problems', '–')}/"
                              f"{entry.get('total_problems', '–')}" for name, entry in entries.items()),
        "backend": str(summary.get("backend", "–")), "dtype": str(summary.get("dtype", "–")),
        "seed": str(summary.get("seed", "–")),
        "top_p": per_benchmark({n: _plain(e.get("generation", {}).get("top_p", "–")) for n, e in entries.items()}),
        "stops": per_benchmark({n: _stops(e.get("generation", {}).get("stop")) for n, e in entries.items()}),
        "context cap": "none" if cap is None and "context_cap" in summary else str(cap if cap is not None else "–"),
        "grader": grader_text + (f" {version}" if version else ""),
        "prompts": per_benchmark({n: str(e.get("prompt_sha256", "–")) for n, e in entries.items()})
                   + (f"; chat template {summary['chat_template_sha256']}"
                      if summary.get("chat_template_sha256") else ""),
    }


def number_settings(rows: list[Row]) -> list[tuple[str, dict[str, str]]]:
    """Each distinct settings set of the run rows, numbered in row order ("[1]", "[2]"...); every
    run row's ``settings`` column gets its number."""
    numbered: list[tuple[str, dict[str, str]]] = []
    for row in rows:
        if row.reported:
            continue
        settings = {k.removeprefix("setting:"): v for k, v in row.context.items() if k.startswith("setting:")}
        match = next((mark for mark, known in numbered if known == settings), None)
        if match is None:
            match = f"[{len(numbered) + 1}]"
            numbered.append((match, settings))
        row.context["settings"] = match
    return numbered


def settings_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """One row per distinct settings set of the run rows, with the runs that share it."""
    body = []
    for mark, settings in number_settings(rows):
        runs = ", ".join(row.label for row in rows if not row.reported and row.context.get("settings") == mark)
        body.append([mark, runs, *(settings.get(name, "–") for name in SETTINGS_COLUMNS)])
    return ["settings", "runs", *SETTINGS_COLUMNS], body


def partial(row: Row) -> bool:
    """A run row that ran only part of some benchmark (``--limit``)."""
    problems = row.context.get("setting:problems", "")
    return any(run != total and total != "–" for run, total in re.findall(r": (\S+?)/([^;]+)", problems))


def run_rows(summaries: list[tuple[str, dict[str, Any]]]) -> list[Row]:
    rows = []
    for label, summary in summaries:
        main = {name: entry["metrics"][MAIN_METRIC] for name, entry in summary["benchmarks"].items()
                if MAIN_METRIC in entry["metrics"]}
        rows.append(Row(label, False, {name: 100 * m["value"] for name, m in main.items()},
                        str(summary.get("model", "")),
                        {name: (100 * m["ci_low"], 100 * m["ci_high"]) for name, m in main.items()
                         if "ci_low" in m and "ci_high" in m},
                        run_context(summary)))
    return rows


def reported_rows() -> list[Row]:
    return [Row(model, True, dict(values), model, context=dict(REPORTED_CONTEXT))
            for model, values in REPORTED.items()]


def benchmark_columns(rows: list[Row]) -> list[str]:
    """PRIME's five benchmarks first (when any row has one), then the others in first-seen order."""
    seen = [name for row in rows for name in row.values]
    ordered = [name for name in PRIME_BENCHMARKS if name in seen]
    return ordered + list(dict.fromkeys(name for name in seen if name not in PRIME_BENCHMARKS))


def prime_average(row: Row) -> float | None:
    """Mean over PRIME's five benchmarks, only for rows that have all five, each run in full (the
    published Avg. is over whole benchmarks)."""
    if not all(name in row.values for name in PRIME_BENCHMARKS) or partial(row):
        return None
    return sum(row.values[name] for name in PRIME_BENCHMARKS) / len(PRIME_BENCHMARKS)


_METRIC = re.compile(r"(?P<family>[A-Za-z_]+)@(?P<k>\d+)")
_FAMILY_ORDER = {"avg": 1, "pass": 2, "maj": 3}


def metric_sort_key(name: str) -> tuple:
    """pass@1 first, then avg@n, pass@k, maj@k by k, then any other family (bon@k, ...)."""
    match = _METRIC.fullmatch(name)
    if match is None:
        return (9, name, 0)
    family, k = match["family"], int(match["k"])
    if name == MAIN_METRIC:
        return (0, "", 0)
    return (_FAMILY_ORDER.get(family, 4), family, k)


def metric_columns(summaries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    names = {metric for _, summary in summaries for entry in summary["benchmarks"].values()
             for metric in entry["metrics"]}
    return sorted(names, key=metric_sort_key)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _with_ci(metric: dict[str, float] | None) -> str:
    if metric is None:
        return "–"
    text = f"{100 * metric['value']:.1f}"
    if "ci_low" in metric and "ci_high" in metric:
        text += f" ({100 * metric['ci_low']:.1f}–{100 * metric['ci_high']:.1f})"
    return text


def _cell(row: Row, name: str) -> str:
    value = row.values.get(name)
    if value is None:
        return "–"
    low_high = row.intervals.get(name)
    return f"{value:.1f}" + ("" if low_high is None else f" ({low_high[0]:.1f}–{low_high[1]:.1f})")


def row_label(row: Row) -> str:
    return row.label + (" (reported)" if row.reported else f" ({SAMPLED})" if row.sampled else "")


def _protocol_cell(row: Row) -> str:
    protocol = row.context.get("protocol", "–")
    return protocol if row.reported or protocol == REPORTED_PROTOCOL else protocol + OTHER_PROTOCOL


def main_table(rows: list[Row]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the pass@1 table: label, context columns, one column per benchmark
    (value and interval), PRIME's average, and provenance columns (the last: the run's row of the
    settings table)."""
    number_settings(rows)
    columns = benchmark_columns(rows)
    header = ["Model", *CONTEXT_COLUMNS, *(benchmark_title(name) for name in columns), AVERAGE,
              *PROVENANCE_COLUMNS]
    body = [[row_label(row), _protocol_cell(row),
             *(row.context.get(c, "–") for c in CONTEXT_COLUMNS[1:]),
             *(_cell(row, name) for name in columns), _percent(prime_average(row)),
             *(row.context.get(c, "–") for c in PROVENANCE_COLUMNS)]
            for row in rows]
    return header, body


def breakdown_table(summaries: list[tuple[str, dict[str, Any]]], key: str
                    ) -> tuple[list[str], list[list[str]]]:
    """pass@1 (%, interval) per level or per subject (``key``) for every run and benchmark that
    records one."""
    header = ["Run", "Benchmark", key.capitalize(), "Problems", "pass@1"]
    body = []
    for label, summary in summaries:
        for name, entry in summary["benchmarks"].items():
            for group, value in entry.get(f"by_{key}", {}).items():
                body.append([label, benchmark_title(name), group, str(value["num_problems"]),
                             _with_ci({"value": value["pass@1"], "ci_low": value["ci_low"],
                                       "ci_high": value["ci_high"]})])
    return header, body


def details_table(summaries: list[tuple[str, dict[str, Any]]]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the all-metrics table: one row per run and benchmark."""
    metrics = metric_columns(summaries)
    header = ["Run", "Benchmark", "Problems", "n", *metrics, "Truncated %"]
    body = []
    for label, summary in summaries:
        for name, entry in summary["benchmarks"].items():
            truncated = entry.get("truncated_rate")
            body.append([label, benchmark_title(name), str(entry.get("num_problems", "–")),
                         str(entry.get("samples_per_problem", "–")),
                         *(_with_ci(entry["metrics"].get(metric)) for metric in metrics),
                         _percent(None if truncated is None else 100 * truncated)])
    return header, body


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, body)])


def _confidence(summaries: list[tuple[str, dict[str, Any]]]) -> str:
    """The runs' interval level(s), as the headings and the footnote name them ("95%")."""
    levels = sorted({float(summary.get("confidence", 0.95)) for _, summary in summaries}) or [0.95]
    return "/".join(f"{level:.0%}" for level in levels)


def _footnote(confidence: str) -> str:
    notes = ", ".join(f"{model}: {value}" for model, value in REPORTED_AVG_NOTE.items())
    budgets = _joined([g.max_new_tokens for g in _REPORTED_GENERATIONS])
    return (f"Reported rows: pass@1 (%) {REPORTED_SOURCE}; the README does not say how each model "
            f"was evaluated (PRIME's own evaluation, protocol {REPORTED_PROTOCOL}, is greedy with "
            f"{budgets} new tokens by benchmark). {AVERAGE} is the mean over AIME 2024, MATH-500, AMC, Minerva Math "
            f"and OlympiadBench, shown for rows that have all five, each run on all its problems; "
            f"the published Avg. differs for {notes}. settings: the run's row in the settings table "
            f"(runs that share a number share every setting there). Run rows: pass@1 (%) with its {confidence} interval over problems (Wilson for "
            f"one right-or-wrong sample per problem, percentile bootstrap otherwise). "
            f"{OTHER_PROTOCOL} marks a protocol other than the published rows' (prompts, budgets "
            f"and answer extraction differ, so the numbers are not directly comparable); "
            f"'({SAMPLED})' marks runs with temperature > 0 or several samples per problem, next "
            f"to greedy published numbers. n: samples per problem; T: temperature; max tokens: "
            f"generation budget (values that differ between benchmarks are joined by /); "
            f"revision: the model's hub commit or a fingerprint of its local files.")


def markdown_report(rows: list[Row], summaries: list[tuple[str, dict[str, Any]]],
                    charts: dict[str, bytes]) -> str:
    confidence = _confidence(summaries)
    parts = ["# Leaderboard", "", "## pass@1 (%)", "", markdown_table(*main_table(rows)), "",
             _footnote(confidence), "", "## Settings", "", markdown_table(*settings_table(rows)), "",
             f"## All metrics (%, {confidence} CI)", "",
             markdown_table(*details_table(summaries)), ""]
    for key in ("level", "subject"):
        header, body = breakdown_table(summaries, key)
        if body:
            parts += [f"## pass@1 by {key} (%, {confidence} CI)", "", markdown_table(header, body), ""]
    parts += [f"![{name}]({name})" for name in charts]
    return "\n".join(parts) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, #metrics td:nth-child(2), #metrics th:nth-child(2) {
  text-align: left; }
div.wide { overflow-x: auto; }
thead th { background: #f0f0f0; }
tr.reported td { color: #666; font-style: italic; background: #fafafa; }
span.tag { font-size: 11px; border: 1px solid #999; border-radius: 3px; padding: 0 4px;
  margin-left: 6px; font-style: normal; }
p.note { color: #555; max-width: 60em; }
img { max-width: 100%; display: block; margin: 1em 0; }
"""


def _html_table(header: list[str], body: list[list[str]], reported: list[bool] | None = None,
                table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    lines = []
    for index, cells in enumerate(body):
        is_reported = bool(reported and reported[index])
        first = html.escape(cells[0].removesuffix(" (reported)"))
        if is_reported:
            first += '<span class="tag">reported</span>'
        tds = f"<td>{first}</td>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells[1:])
        lines.append(f'<tr class="{"reported" if is_reported else "run"}">{tds}</tr>')
    return (f'<div class="wide"><table id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(lines)}</tbody></table></div>')


def html_report(rows: list[Row], summaries: list[tuple[str, dict[str, Any]]],
                charts: dict[str, bytes]) -> str:
    """One HTML file with everything inline (CSS and base64 PNGs), so it can be mailed or archived."""
    confidence = _confidence(summaries)
    images = "".join(f'<img alt="{html.escape(name)}" '
                     f'src="data:image/png;base64,{base64.b64encode(data).decode()}">'
                     for name, data in charts.items())
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>primekit leaderboard</title><style>{_CSS}</style></head><body>"
            "<h1>Leaderboard</h1><h2>pass@1 (%)</h2>"
            + _html_table(*main_table(rows), reported=[row.reported for row in rows],
                          table_id="leaderboard")
            + f'<p class="note">{html.escape(_footnote(confidence))}</p>'
            + "<h2>Settings</h2>" + _html_table(*settings_table(rows), table_id="settings")
            + f"<h2>All metrics (%, {confidence} CI)</h2>"
            + _html_table(*details_table(summaries), table_id="metrics")
            + "".join(f"<h2>pass@1 by {key} (%, {confidence} CI)</h2>"
                      + _html_table(header, body, table_id=f"by-{key}")
                      for key in ("level", "subject")
                      for header, body in [breakdown_table(summaries, key)] if body)
            + images + "</body></html>\n")


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # matplotlib only for the PNG charts

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def pass1_chart(rows: list[Row]) -> bytes:
    """Grouped bars of pass@1 per benchmark, one bar per row; reported rows are hatched."""
    from matplotlib.figure import Figure  # heavy: loaded only when a plot is drawn
    from matplotlib.patches import Patch  # heavy: loaded only when a plot is drawn

    columns = benchmark_columns(rows)
    figure = Figure(figsize=(max(6.0, 1.6 * len(columns) + 2), 4.8))
    axes = figure.add_subplot()
    width = 0.8 / max(1, max(sum(name in row.values for row in rows) for name in columns))
    for column, name in enumerate(columns):
        present = [index for index, row in enumerate(rows) if name in row.values]
        for slot, index in enumerate(present):  # each group holds only the rows that have it
            row = rows[index]
            axes.bar(column + (slot - (len(present) - 1) / 2) * width, row.values[name], width,
                     color=f"C{index % 10}", alpha=0.55 if row.reported else 0.95,
                     hatch="//" if row.reported else None, edgecolor="white")
    handles = [Patch(facecolor=f"C{index % 10}", alpha=0.55 if row.reported else 0.95,
                     hatch="//" if row.reported else None, edgecolor="white",
                     label=row_label(row))
               for index, row in enumerate(rows)]
    axes.set_xticks(range(len(columns)), [benchmark_title(name) for name in columns])
    axes.set_ylabel("pass@1 (%)")
    axes.set_ylim(0, 100)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(handles=handles, fontsize=7, ncols=3, loc="upper center",
                bbox_to_anchor=(0.5, -0.1), frameon=False)
    return _png(figure)


def scaling_chart(summaries: list[tuple[str, dict[str, Any]]]) -> bytes | None:
    """Metric vs k (pass@k, maj@k, and families such as bon@k) for runs with several samples;
    ``None`` when no run has a metric at two or more k."""
    from matplotlib.figure import Figure  # heavy: loaded only when a plot is drawn

    curves = []
    for label, summary in summaries:
        for name, entry in summary["benchmarks"].items():
            families: dict[str, list[tuple[int, float]]] = {}
            for metric, value in entry["metrics"].items():
                match = _METRIC.fullmatch(metric)
                if match and match["family"] != "avg":
                    families.setdefault(match["family"], []).append((int(match["k"]), value["value"]))
            for family, points in families.items():
                if len(points) >= 2:
                    curves.append((f"{label} · {benchmark_title(name)} · {family}@k", sorted(points)))
    if not curves:
        return None
    figure = Figure(figsize=(7, 4.2))
    axes = figure.add_subplot()
    for title, points in curves:
        axes.plot([k for k, _ in points], [100 * v for _, v in points], marker="o", label=title)
    ks = sorted({k for _, points in curves for k, _ in points})
    axes.set_xscale("log", base=2)
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set_ylim(0, 100)
    axes.set_xlabel("k (samples)")
    axes.set_ylabel("accuracy (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    return _png(figure)


def write_leaderboard(run_paths: list[str], out_dir: str | os.PathLike, *,
                      include_reported: bool = True) -> dict[str, Path]:
    """Write ``leaderboard.md``, ``leaderboard.html`` and the chart PNGs; returns their paths."""
    if not run_paths:
        raise InputError("give at least one run folder or summary.json")
    summaries = [load_summary(path) for path in run_paths]
    rows = run_rows(summaries) + (reported_rows() if include_reported else [])
    charts = {"pass1.png": pass1_chart(rows)}
    scaling = scaling_chart(summaries)
    if scaling is not None:
        charts["scaling.png"] = scaling
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, data in charts.items():
        atomic_write_bytes(out / name, data)
        written[name] = out / name
    atomic_write_text(out / "leaderboard.md", markdown_report(rows, summaries, charts))
    atomic_write_text(out / "leaderboard.html", html_report(rows, summaries, charts))
    written["leaderboard.md"] = out / "leaderboard.md"
    written["leaderboard.html"] = out / "leaderboard.html"
    return written
