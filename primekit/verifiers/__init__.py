"""Outcome verifiers: :mod:`primekit.verifiers.math` (final-answer equivalence) and
:mod:`primekit.verifiers.code` (programs run against tests in a sandbox). Each is imported on use:
the math grader loads sympy, the code verifier checks for its sandbox."""
