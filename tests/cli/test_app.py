"""The root app: every subcommand registered, help texts that wrap at the terminal's width."""

from __future__ import annotations

import itertools

import pytest
from typer.testing import CliRunner

from crystensor.cli.app import app
from crystensor.cli.common import command_help

COMMANDS = [
    "fetch",
    "featurize",
    "train",
    "finetune",
    "ensemble",
    "predict",
    "evaluate",
    "decompose",
]


def test_every_subcommand_is_registered_with_a_reflowed_help():
    registered = {c.name: c for c in app.registered_commands}
    assert sorted(registered) == sorted(COMMANDS)
    for command in registered.values():
        paragraphs = command.help.split("\n\n")
        # a single line break would be kept by typer and split a sentence mid-line
        assert all("\n" not in p and p == p.strip() for p in paragraphs), command.name
        assert len(paragraphs) >= 2, command.name


def test_command_help_joins_lines_and_keeps_paragraphs():
    def documented():
        """First line.

        A paragraph over
            two lines.

        Another.
        """

    assert command_help(documented) == "First line.\n\nA paragraph over two lines.\n\nAnother."


@pytest.mark.parametrize("name", COMMANDS)
def test_help_at_80_columns_breaks_no_sentence_after_a_short_line(name):
    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    description = result.output.split("╭")[0].splitlines()[2:]  # after the usage line
    lines = [line.strip() for line in description]
    for line, after in itertools.pairwise(lines):
        # the old failure: a line wrapped at 80 columns left a stub like "and its" on its own
        if line and after:
            assert len(line) > 50, f"{name}: short line {line!r} before {after!r}"
