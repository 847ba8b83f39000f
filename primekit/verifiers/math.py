"""The math verifier: is a response's final answer equivalent to the gold answer?

Its home is :mod:`primekit.eval.grader` (string → number → symbolic checks, never evaluating model
output); this module is the verifiers' entry point to it, next to :mod:`primekit.verifiers.code`.
"""

from primekit.eval.grader import DEFAULT_TIMEOUT, grade, grade_many, is_equivalent

__all__ = ["DEFAULT_TIMEOUT", "grade", "grade_many", "is_equivalent"]
