"""scaling: a scaling-law experiment harness for causal language models.

A pure core (:mod:`scaling.errors`, :mod:`scaling.counting`, :mod:`scaling.schema`,
:mod:`scaling.config`) under two stacks: :mod:`scaling.training` (torch, Lightning, MLflow: train
and track runs, sweep grids) and :mod:`scaling.analysis` (numpy, scipy, pandas: fit laws, predict,
report). docs/ARCHITECTURE.md draws the picture and lists the contracts.
"""
