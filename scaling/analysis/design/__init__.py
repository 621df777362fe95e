"""Designing the runs before they are trained.

``scaling plan``, a guarded IsoFLOP ladder for a target budget:

- :mod:`.plan`: the ladder: budgets, sizes bracketing ``N_opt``, the guards, what is affordable.
- :mod:`.options`: what the planner takes (:class:`~.options.PlanOptions`) and the run each
  planned point resolves to.
- :mod:`.prior`: the guess of the compute-optimal size ``N_opt(C)`` the sizes centre on.
- :mod:`.shapes`: the catalogue of valid model shapes (the planner and ``scaling verify`` snap
  to it).
- :mod:`.throughput`: a run's wall-clock (the planner's hours, the sweep's ETA).
- :mod:`.preset`: the printed table and the sweep preset ``sweeps/NAME.yaml``.

``fit --law hparams``, the best LR and batch per budget as power laws in C:

- :mod:`.hparams`: the fit over a run table's budgets.
- :mod:`.hparams_optima`: one budget's LR and batch optima (profile parabolas).
- :mod:`.hparams_law`: ``x*(C) = a C^b`` by weighted least squares, with intervals.
- :mod:`.hparams_file`: the rule file ``hparams.json`` and the printed summary.
"""
