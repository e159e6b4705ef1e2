"""The README and the documentation site keep their promises: links that work on the package
index, set-up commands that are CI's, examples that run, and every public name documented."""

from __future__ import annotations

import pathlib
import re

import pytest

import vtex_tracking
import vtex_tracking.celery
import vtex_tracking.testing
from vtex_tracking.testing import FakeOMS

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI_RUN = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

# Markdown links and images: [text](target) and ![alt](target); HTML src= and href= too.
LINK_TARGETS = re.compile(r"\]\(([^)\s]+)[^)]*\)|(?:src|href)=\"([^\"]+)\"")


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def test_every_readme_link_and_image_is_absolute() -> None:
    """The package index renders README.md away from the repository: no relative link may break."""
    targets = [a or b for a, b in LINK_TARGETS.findall(README)]
    assert len(targets) >= 10, targets
    relative = [t for t in targets if not t.startswith("https://")]
    assert relative == []
    raw = "https://raw.githubusercontent.com/vtex-tracking/vtex-tracking/main/"
    assert raw + "benchmarks/chart.png" in targets
    assert any(t.endswith("/pt-BR/") for t in targets), "the pt-BR guide is linked"


def test_the_readme_set_up_commands_are_the_ones_ci_runs() -> None:
    """'Set up on a fresh machine' installs and tests exactly as .ci/run does."""
    setup = README.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    assert '.venv/bin/pip install -e ".[dev]"' in setup
    assert "python -m pytest -q" in setup
    assert 'python -m pip install --quiet -e ".[dev]"' in CI_RUN
    assert re.search(r"^python -m pytest -q$", CI_RUN, flags=re.MULTILINE)


@pytest.mark.parametrize("package", [vtex_tracking, vtex_tracking.testing, vtex_tracking.celery])
def test_every_public_name_is_in_the_api_reference(package: object) -> None:
    """Each name of __all__ has a page in the API reference (directly, or through its package)."""
    api = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md"))
    directives = set(re.findall(r"^::: ([\w.]+)$", api, flags=re.MULTILINE))
    name = package.__name__  # type: ignore[attr-defined]
    if name in directives and name != "vtex_tracking":
        return  # the whole package is rendered, every member of its __all__ with it
    missing = [
        n
        for n in package.__all__  # type: ignore[attr-defined]
        if n != "__version__" and f"{name}.{n}" not in directives
    ]
    assert missing == []


def test_the_readme_examples_run_against_a_fake_vtex(monkeypatch: pytest.MonkeyPatch) -> None:
    """The async and the sync example of the README send their number and events as written."""
    blocks = _python_blocks(README)
    assert len(blocks) == 2, "the README has one async and one sync example"
    with FakeOMS() as oms:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", oms.app_key)
        monkeypatch.setenv("VTEX_APP_TOKEN", oms.app_token)
        for block in blocks:
            assert block.count("from_env()") == 1
            code = block.replace("from_env()", f"from_env(base_url={oms.url!r})")
            exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
        assert oms.accepted("1172452900788-01", "000030711")
        assert len(oms.updates[("1172452900788-01", "000030711")]) == 2  # one per example
        assert oms.unapplied == []


def test_links_into_the_site_name_pages_that_exist() -> None:
    """A link from README, CONTRIBUTING or SECURITY to the documentation site names a real page."""
    site = "https://vtex-tracking.readthedocs.io/en/stable/"
    generated = {"pt-BR", "changelog", "contributing", "security"}  # docs/_hooks/project_files.py
    linked = {
        path.split("#", 1)[0].rstrip("/")
        for name in ("README.md", "CONTRIBUTING.md", "SECURITY.md")
        for path in re.findall(re.escape(site) + r"([^)>\s]*)", (ROOT / name).read_text("utf-8"))
    }
    assert len(linked) >= 20, linked
    docs = ROOT / "docs"
    missing = [
        p
        for p in sorted(linked)
        if p
        and p not in generated
        and not (docs / f"{p}.md").is_file()
        and not (docs / p / "index.md").is_file()
    ]
    assert missing == []
