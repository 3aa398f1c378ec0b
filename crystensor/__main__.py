"""``python -m crystensor`` (and ``torchrun -m crystensor train ...``) runs the CLI."""

from crystensor.cli.app import main

main()
