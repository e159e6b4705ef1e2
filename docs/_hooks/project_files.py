"""MkDocs hook: publish files kept at the repository's top level as pages of the site.

The pt-BR guide, the changelog, CONTRIBUTING and SECURITY live where GitHub and the package
index expect them; copying them into docs/ would leave two versions to drift apart. The
benchmark chart stays next to the benchmarks that draw it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]

# Site page -> file at the top of the repository.
PAGES = {
    "pt-BR.md": "README.pt-BR.md",
    "changelog.md": "CHANGELOG.md",
    "contributing.md": "CONTRIBUTING.md",
    "security.md": "SECURITY.md",
}
# Binary files the pages show, copied as they are.
ASSETS = {"assets/chart.png": "benchmarks/chart.png"}
# A link to one of these files, written for GitHub, becomes a link to its page on the site.
LINKS = {"README.md": "index.md", **{source: page for page, source in PAGES.items()}}
_NAMES = "|".join(re.escape(name) for name in LINKS)
_LINK = re.compile(rf"\]\(({_NAMES})(#[^)]*)?\)")


def _site_links(markdown: str) -> str:
    return _LINK.sub(lambda m: f"]({LINKS[m.group(1)]}{m.group(2) or ''})", markdown)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for page, source in PAGES.items():
        content = _site_links((ROOT / source).read_text(encoding="utf-8"))
        files.append(File.generated(config, page, content=content))
    for asset, source in ASSETS.items():
        files.append(File.generated(config, asset, abs_src_path=str(ROOT / source)))
    return files


def on_serve(server: Any, config: MkDocsConfig, builder: Any) -> Any:
    """`mkdocs serve` rebuilds when one of the top-level files changes too."""
    for source in [*PAGES.values(), *ASSETS.values()]:
        server.watch(str(ROOT / source))
    return server
