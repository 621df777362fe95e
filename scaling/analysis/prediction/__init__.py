"""What a fit says beyond its runs, and whether it may say it.

- :mod:`.predict`: Predictor: a budget's allocation, a size's loss, a target's compute.
- :mod:`.health`: the health verdict of a fit, one line per reason it cannot predict.
- :mod:`.compare`: two fits side by side at one budget, the compute multiplier.
"""
