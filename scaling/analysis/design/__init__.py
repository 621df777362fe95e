"""Designing the runs before they are trained.

- :mod:`.plan`: ``scaling plan``: a guarded IsoFLOP ladder for a target budget.
- :mod:`.hparams`: ``fit --law hparams``: the best LR and batch per budget, power laws in C.
"""
