"""The README keeps its promises: every variable documented, the two commands in place."""

import re
from pathlib import Path

from appfactory.config import VARS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_configuration_variable_is_in_the_readme_table():
    table_rows = "\n".join(line for line in README.splitlines() if line.startswith("| `"))
    rows = set(re.findall(r"`([A-Z][A-Z_]+)`", table_rows))
    missing = [var.name for var in VARS if var.name not in rows]
    assert missing == []


def test_the_test_command_is_the_one_ci_runs():
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", README, flags=re.S)
    test_command = next(command for command in commands if "pytest" in command)
    assert test_command.strip() in ci
