"""`evaluate` metric module for math answers: pass@1, avg@n, pass@k and maj@k with bootstrap
intervals, graded by primekit's grader.

``evaluate.load`` fetches metrics from the Hugging Face Hub, which offline machines cannot reach;
this file is loaded from its path instead::

    import evaluate
    from primekit.eval.evaluate_metric import METRIC_PATH
    metric = evaluate.load(METRIC_PATH)
    metric.compute(predictions=[["... \\boxed{4}", "... \\boxed{5}"]], references=["4"])

Each prediction is the list of a problem's sampled responses (one element for greedy decoding);
each reference is its gold answer. The metric itself lives in ``primekit.statistics``.
"""

import datasets
import evaluate

from primekit.eval.grading import grade_responses
from primekit.statistics import summarize

_DESCRIPTION = ("Accuracy of final math answers (last \\boxed{} etc.) against gold answers, by "
                "symbolic/numeric equivalence: pass@1, avg@n, unbiased pass@k, maj@k, with "
                "percentile-bootstrap confidence intervals over problems.")
_CITATION = ("Chen et al., Evaluating Large Language Models Trained on Code (2021), for the "
             "unbiased pass@k estimator.")
_INPUTS = """
Args:
    predictions: list (one per problem) of lists of response strings (the samples, in order).
    references: list of gold answer strings.
    ks: k values for pass@k / maj@k (default: powers of two below n, and n).
    confidence, n_resamples, seed: bootstrap settings.
    processes: grader worker processes (None: the grader's default).
Returns:
    {"pass@1": float, "pass@1_ci": (low, high), "avg@n": ..., "pass@k": ..., "maj@k": ...}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class MathAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_INPUTS,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string")),
                "references": datasets.Value("string"),
            }))

    def _compute(self, predictions, references, ks=None, confidence=0.95, n_resamples=1000,
                 seed=0, processes=None):
        sizes = [len(samples) for samples in predictions]
        graded = grade_responses([r for samples in predictions for r in samples],
                                 [gold for gold, size in zip(references, sizes) for _ in range(size)],
                                 processes=processes)
        answers, correct, start = [], [], 0
        for size in sizes:
            answers.append([pred for pred, _ in graded[start:start + size]])
            correct.append([ok for _, ok in graded[start:start + size]])
            start += size
        metrics = summarize(correct, answers, ks, confidence=confidence,
                            n_resamples=n_resamples, seed=seed)
        result = {}
        for name, value in metrics.items():
            result[name] = value.value
            result[f"{name}_ci"] = (value.ci_low, value.ci_high)
        return result
