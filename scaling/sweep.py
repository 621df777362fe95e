"""``python -m scaling.sweep -m ...``: a grid of runs (see :mod:`scaling.training.sweep`)."""

from scaling.training.sweep import main

if __name__ == "__main__":
    main()
