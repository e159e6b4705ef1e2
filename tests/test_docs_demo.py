"""The documentation's demos, run as printed: a demo is marked ``<!-- demo: NAME -->`` just
before the fenced block of its command, and the next fenced block is the output the reader is
shown. Every figure of that output but times and rates (which vary from run to run) must be
what the command prints, so the page and the command cannot drift apart.

To move a demo to another page, move its marker with it and point ``DEMOS`` at that page.
"""

from __future__ import annotations

import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: Each demo: the page that shows it, by its marker's name.
DEMOS = {"many-stores": ROOT / "docs" / "tutorials" / "many-stores.md"}
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
# "3.0 s", "16.4 updates/s": times and rates are the only decimals a summary prints.
_DECIMAL = re.compile(r"\d+\.\d+")


def demo(page: pathlib.Path, name: str) -> tuple[str, str]:
    """The command and the output shown after the marker ``<!-- demo: name -->``."""
    text = page.read_text(encoding="utf-8")
    marker = f"<!-- demo: {name} -->"
    assert text.count(marker) == 1, f"{page.name}: expected one {marker!r}"
    blocks = _FENCE.findall(text, text.index(marker))
    assert len(blocks) >= 2, f"{page.name}: {marker!r} needs a command block and an output block"
    command, output = blocks[0].strip(), blocks[1].rstrip("\n")
    assert "\n" not in command, f"{page.name}: the demo {name!r} must be one command"
    return command, output


def _figures(output: str) -> list[str]:
    return [_DECIMAL.sub("<n.n>", line.rstrip()) for line in output.splitlines()]


@pytest.mark.parametrize("name", sorted(DEMOS))
def test_demo_output_is_what_the_command_prints(name: str, tmp_path: pathlib.Path) -> None:
    """Run the demo's command as printed (in a copy of the repository's examples, so nothing
    it writes lands in the checkout) and compare its summary with the page's."""
    command, shown = demo(DEMOS[name], name)
    argv = shlex.split(command)
    assert argv[0] == "vtex-tracking", f"the demo {name!r} does not run vtex-tracking"
    shutil.copytree(
        ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    done = subprocess.run(
        [sys.executable, "-m", "vtex_tracking.cli", *argv[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert _figures(done.stdout) == _figures(shown)
