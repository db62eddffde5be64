"""The help of tus-server, tus-cli (and each verb) and tus-bench reads well at 80 columns, the width
swift-argument-parser wraps to when stdout is not a terminal: no line is longer, and prose paragraphs are written as
one logical line each, so the wrapped text fills its lines instead of breaking where the source was hard-wrapped
(tus-cli's discussion used to show a 30-character line in the middle of each sentence)."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tus_helpers import repo_root, server_binary

WIDTH = 80
# Tokens that cannot be broken (the default of --hooks-enabled-events) may exceed the width on their own line.
UNBREAKABLE = re.compile(r"^\s*\S+\)?$")


def binary(name: str) -> str:
    configured = {"tus-cli": os.environ.get("TUS_CLI_BIN"), "tus-server": server_binary()}.get(name)
    if configured:
        return configured
    for candidate in (f".build/release/{name}", f".build/debug/{name}"):
        path = repo_root() / candidate
        if path.exists():
            return str(path)
    pytest.skip(f"{name} is not built")


def help_text(*command: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    result = subprocess.run(
        [binary(command[0]), *command[1:], "--help"], capture_output=True, text=True, timeout=30, env=environment)
    assert result.returncode == 0, result
    return result.stdout


COMMANDS = [
    ("tus-server",), ("tus-bench",), ("tus-cli",),
    *[("tus-cli", verb) for verb in ("options", "post", "head", "patch", "delete", "upload", "download")],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_fits_80_columns(command: tuple[str, ...]):
    text = help_text(*command)
    long = [line for line in text.splitlines() if len(line) > WIDTH and not UNBREAKABLE.match(line)]
    assert not long, "\n".join(long)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_prose_is_reflowed_not_hard_wrapped(command: tuple[str, ...]):
    """In a paragraph of prose (lines starting at column 0), every line but the last is filled close to the width."""
    paragraphs = help_text(*command).split("\n\n")
    for paragraph in paragraphs:
        lines = paragraph.splitlines()
        if len(lines) < 2 or any(line.startswith(" ") or line.endswith(":") for line in lines):
            continue  # tables, option lists, headings
        short = [line for line in lines[:-1] if len(line) < WIDTH - 20]
        assert not short, f"hard-wrapped prose in {' '.join(command)} --help:\n{paragraph}"
