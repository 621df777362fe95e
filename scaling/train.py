"""``python -m scaling.train``: one training run (see :mod:`scaling.training.run`)."""

from scaling.training.run import main

if __name__ == "__main__":
    main()
