"""The ``crystensor`` command line (typer + rich). The library never imports this package."""
