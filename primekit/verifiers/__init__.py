"""Outcome verifiers: :mod:`primekit.verifiers.math` (final-answer equivalence; sympy runs only in
its worker process) and :mod:`primekit.verifiers.code` (programs run against tests in a sandbox,
which it checks for before the first run)."""
