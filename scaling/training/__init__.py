"""The training stack: torch, Lightning and MLflow live here and nowhere else.

- :mod:`.model`: the GPT decoder in plain torch.
- :mod:`.data`: corpora, tokenizers, the token cache and the batches.
- :mod:`.module`: the LightningModule (loss, AdamW, LR schedule, log-spaced validation).
- :mod:`.run`: one training run, config -> MLflow record (``python -m scaling.train``).
- :mod:`.sweep`: Hydra multirun over runs (``python -m scaling.sweep``).
- :mod:`.tracking`: the MLflow store and the recorder of one run.
- :mod:`.collect`: an MLflow experiment -> the run table of :mod:`scaling.analysis.table`.
"""
