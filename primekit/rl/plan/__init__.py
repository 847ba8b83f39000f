"""The memory plan of a ``prime-rl train`` run, from the models' ``config.json`` before any weight loads.

One job per module: :mod:`~primekit.rl.plan.shapes` (a model's shape from its config),
:mod:`~primekit.rl.plan.formulas` (the memory terms, pure functions of shape, dtypes and batch),
:mod:`~primekit.rl.plan.launcher` (the parallelism a run is launched with),
:mod:`~primekit.rl.plan.memory` (the terms placed in the run's phases and the verdict),
:mod:`~primekit.rl.plan.host_memory` (CPU memory per machine) and :mod:`~primekit.rl.plan.report`
(``prime-rl plan``'s tables).
"""
