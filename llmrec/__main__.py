"""``python -m llmrec`` runs the command-line interface (see :mod:`llmrec.cli`)."""

from .cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
