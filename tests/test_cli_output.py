"""What ``vtex-tracking push`` writes where: ``--json`` (stdout is one JSON object, usage
errors included), ``-q`` (no progress), and ``--help`` (examples, wrapping, metavars); against
FakeOMS over real sockets."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from vtex_tracking.cli import _report, main
from vtex_tracking.testing import FakeOMS

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
JSONL = EXAMPLES / "sample-updates.jsonl"
CREDENTIAL_VARIABLES = (
    "VTEX_ACCOUNT_NAME",
    "VTEX_ENVIRONMENT",
    "VTEX_APP_KEY",
    "VTEX_APP_TOKEN",
    "VTEX_USER_TOKEN",
    "VTEX_ACCOUNTS",
)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own directory, without credentials in the environment."""
    monkeypatch.chdir(tmp_path)
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _line(order: str, date: str = "2026-11-02") -> str:
    event = {"city": "Recife", "state": "PE", "description": "Objeto postado", "date": date}
    return json.dumps({"orderId": order, "invoiceNumber": "NF-1", "events": [event]})


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vtex_tracking.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )


# -- --json -----------------------------------------------------------------------------------


def test_json_stdout_is_one_object_in_a_real_pipe(tmp_path: pathlib.Path) -> None:
    """In a subprocess with failures and malformed lines, stdout parses whole as one JSON
    object; the summary in words and each failure are on stderr."""
    path = tmp_path / "day.jsonl"
    path.write_text(
        "\n".join([_line("o-1"), "{oops", _line("o-2"), _line("o-3")]) + "\n", encoding="utf-8"
    )
    with FakeOMS() as server:
        server.fail_next(1, 400)
        env = {
            "VTEX_ACCOUNT_NAME": "acme",
            "VTEX_APP_KEY": server.app_key,
            "VTEX_APP_TOKEN": server.app_token,
        }
        done = _cli(
            "push", str(path), "--base-url", server.url, "--json", "--concurrency", "1", env=env
        )
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (4, 2, 2)
    assert summary["failures_file"] == "day.failed.jsonl"
    assert f"{path}:2: not valid JSON" in done.stderr
    assert "Done: 4 updates" in done.stderr and "retry them with" in done.stderr


def test_json_dry_run_stdout_is_one_object(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run --json: the JSON summary alone on stdout, marked dry_run."""
    assert main(["push", str(JSONL), "--dry-run", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["dry_run"] is True and summary["succeeded"] == 30
    assert "Dry run: 30 updates" in captured.err


@pytest.mark.parametrize(
    ("argv", "kind", "says"),
    [
        (["push", str(JSONL), "--concurrency", "0"], "usage", "--concurrency: must be at"),
        (["push", str(JSONL), "--no-such-option"], "usage", "unrecognized arguments"),
        (["push", "--json"], "usage", "the following arguments are required: FILE"),
        (["push", str(JSONL), "-q", "-v"], "usage", "not allowed with argument"),
        (["push", str(JSONL), "--date-format", "mm/dd/yyyy"], "usage", "invalid choice"),
        (["push", "nao-existe.jsonl"], "input", "nao-existe.jsonl: cannot read"),
        (["push", "updates.txt"], "input", "updates.txt: unknown file type"),
        (["push", str(JSONL)], "configuration", "VTEX_APP_KEY"),
    ],
)
def test_a_run_that_cannot_start_answers_json_with_an_error_object(
    argv: list[str], kind: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --json, a usage error, an unusable input or missing credentials give exit 2 and
    stdout {"error": {"kind", "message"}} alone; the message is on stderr too."""
    assert main([*argv, "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["kind"] == kind
    assert says in error["message"]
    assert says in captured.err


def test_an_abbreviated_json_option_still_answers_json(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse accepts --js for --json: a usage error then is JSON as well."""
    assert main(["push", str(JSONL), "--js", "--timeout", "soon"]) == 2
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "usage"


def test_without_json_a_usage_error_leaves_stdout_empty(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --json, usage errors are for people: stderr only."""
    assert main(["push", str(JSONL), "--concurrency", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--concurrency: must be at least 1" in captured.err


def test_json_error_never_carries_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    """A run that cannot start (the failures file cannot be written) with a token on the
    command line: the token is in neither the JSON error nor stderr."""
    argv = ["push", str(JSONL), "--json", "--account", "acme", "--app-key", "vtexappkey-x"]
    argv += ["--app-token", "TOKEN-SUPERSECRET-77", "--failed", str(JSONL)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["kind"] == "input"
    assert "SUPERSECRET" not in captured.out + captured.err


# -- -q ---------------------------------------------------------------------------------------


def _progress_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("progress: ")]


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_removes_progress_and_failures_one_by_one(
    quiet: bool,
    oms: FakeOMS,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """-q: no progress lines and no failure lines, the summary only; without it, both appear
    under the same conditions."""
    monkeypatch.setattr(_report, "PLAIN_PROGRESS_EVERY", 0.01)
    oms.latency = 0.02
    path = tmp_path / "day.jsonl"
    path.write_text("\n".join([_line(f"o-{n}") for n in range(12)] + ["{oops"]) + "\n", "utf-8")
    argv = ["push", str(path), "--base-url", oms.url, "--concurrency", "1"]
    assert main([*argv, "-q"] if quiet else argv) == 1
    captured = capsys.readouterr()
    assert "Done: 13 updates" in captured.out
    assert "failed: 1 record in day.failed.jsonl" in captured.out
    if quiet:
        assert captured.err == ""
    else:
        assert len(_progress_lines(captured.err)) >= 2
        assert f"{path}:13: not valid JSON" in captured.err


@pytest.mark.parametrize("quiet", [False, True])
def test_quiet_removes_the_progress_bar_on_a_terminal(
    quiet: bool,
    oms: FakeOMS,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On a terminal the tqdm bar is drawn on stderr, unless -q."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    argv = ["push", str(JSONL), "--base-url", oms.url]
    assert main([*argv, "-q"] if quiet else argv) == 0
    err = capsys.readouterr().err
    assert ("30 updates" in err and "ok=30" in err) is not quiet
    assert (err == "") is quiet


def test_quiet_json_for_cron(oms: FakeOMS, capsys: pytest.CaptureFixture[str]) -> None:
    """--json -q: the JSON object on stdout, the summary in words alone on stderr."""
    assert main(["push", str(JSONL), "--base-url", oms.url, "--json", "-q"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["succeeded"] == 30
    assert captured.err.startswith("Done: 30 updates")
    assert not _progress_lines(captured.err)


# -- --help -----------------------------------------------------------------------------------


def _help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 0
    out: str = capsys.readouterr().out
    return out


def test_push_help_shows_examples_as_written(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """push --help ends with example command lines, each kept on its own line even on a
    narrow terminal, while its paragraphs are wrapped to the terminal."""
    monkeypatch.setenv("COLUMNS", "60")
    text = _help(["push", "--help"], capsys)
    lines = text.splitlines()
    for example in (
        "  vtex-tracking push eventos.csv --encoding cp1252 --date-format dd/mm/yyyy",
        "  vtex-tracking push eventos.jsonl --json -q --failed /var/spool/vtex/failed.jsonl",
        "  vtex-tracking push eventos.failed.jsonl",
    ):
        assert example in lines
    epilog = text[text.index("Credentials default") : text.index("examples:")]
    assert max(len(line) for line in epilog.splitlines()) <= 58
    assert "--date-" + "\n" not in text  # an option's name is never split at its hyphen


def test_top_level_help_wraps_its_description(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """vtex-tracking --help wraps the description to the terminal and keeps its command
    lines whole."""
    monkeypatch.setenv("COLUMNS", "50")
    text = _help(["--help"], capsys)
    head = text[: text.index("positional arguments")]
    commands = [line for line in head.splitlines() if line.startswith("  vtex-tracking")]
    assert len(commands) == 3
    assert all(len(line) <= 48 for line in head.splitlines() if line not in commands)
    assert "VTEX's 'Update order tracking status' endpoint" in " ".join(head.split())


@pytest.mark.parametrize(
    "shown",
    [
        "--encoding ENC",
        "--date-format {iso,dd/mm/yyyy}",
        "--account NAME",
        "--accounts FILE",
        "--app-token TOKEN",
        "--base-url URL",
        "--concurrency N",
        "--rate-limit R",
        "--timeout S",
        "--failed FILE",
        "-q, --quiet",
        "--trust-env",
    ],
)
def test_push_help_names_each_value_by_its_kind(
    shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Options show consistent metavars (FILE, N, R, S, ENC, URL, NAME, TOKEN)."""
    assert shown in _help(["push", "--help"], capsys)


def test_fake_server_help_names_its_values(capsys: pytest.CaptureFixture[str]) -> None:
    """fake-server's options use the same metavars."""
    text = _help(["fake-server", "--help"], capsys)
    for shown in ("--host HOST", "--port PORT", "--accounts FILE", "--latency S"):
        assert shown in text

