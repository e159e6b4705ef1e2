"""What ``import vtex_tracking`` loads, and that what it leaves out is still there on use.

Checked in a fresh interpreter, through ``sys.modules`` (not timing: the machine's speed must
not decide a test). The CPU cost itself is the benchmarks' ``import_time`` scenario.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import vtex_tracking
from vtex_tracking._public import LAZY

#: Never loaded by ``import vtex_tracking``: only programs that use them pay for them.
LEFT_OUT = (
    "anyio",  # a push's stream and engine
    "cattrs",  # the wire converter, built on the first encode or decode
    "redis",
    "sqlite3",  # the journal, the unchanged state, SQLite histories
    "tomllib",  # accounts files
    "zoneinfo",  # the first aware datetime
    "vtex_tracking._accounts",
    "vtex_tracking._history",
    "vtex_tracking._history_rules",
    "vtex_tracking._input",
    "vtex_tracking._journal",
    "vtex_tracking._lane",
    "vtex_tracking._limits_file",
    "vtex_tracking._progress",
    "vtex_tracking._push",
    "vtex_tracking._push_options",
    "vtex_tracking._read",
    "vtex_tracking._read_back",
    "vtex_tracking._remember",
    "vtex_tracking._reports",
    "vtex_tracking._shared",
    "vtex_tracking._stream",
)


def _fresh(script: str) -> Any:
    """Run ``script`` in a new interpreter and return what it printed, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_import_leaves_out_what_most_programs_never_use() -> None:
    """Neither ``import vtex_tracking`` nor importing what a program that sends updates
    needs loads cattrs, anyio, Redis, SQLite, or the modules of accounts files, histories,
    the journal, pushes, orders read back or metrics."""
    loaded = _fresh(
        """
        import json, sys
        import vtex_tracking
        from vtex_tracking import (
            AsyncTrackingClient, ClientConfig, InvoiceTracking, RateLimitError, SharedPace,
            TrackingClient, TrackingEvent, TrackingReceipt, TrackingStatus, TrackingUpdate,
        )
        print(json.dumps(sorted(sys.modules)))
        """
    )
    assert [name for name in LEFT_OUT if name in loaded] == []
    # The list above is checked against something real: these are loaded.
    assert {"vtex_tracking._client", "vtex_tracking._sync", "aiohttp", "attrs"} <= set(loaded)


def test_every_lazy_name_resolves_reports_the_package_and_is_listed() -> None:
    """Each name whose module is imported on first use is in ``__all__`` and ``dir()``, comes
    back from ``getattr`` and ``from vtex_tracking import ...`` as the object its module
    defines, and says ``vtex_tracking`` is its module (tracebacks, reprs, pickles)."""
    assert set(LAZY) <= set(vtex_tracking.__all__)
    assert set(vtex_tracking.__all__) <= set(dir(vtex_tracking))
    seen = _fresh(
        """
        import importlib, json, sys
        import vtex_tracking
        from vtex_tracking._public import LAZY
        loaded = [m for m in set(LAZY.values()) if f"vtex_tracking.{m}" in sys.modules]
        out = {}
        for name, module in LAZY.items():
            value = getattr(vtex_tracking, name)
            scope = {}
            exec(f"from vtex_tracking import {name} as found", scope)
            defined = getattr(importlib.import_module(f"vtex_tracking.{module}"), name)
            out[name] = [value is defined, scope["found"] is defined, value.__module__]
        print(json.dumps([loaded, out]))
        """
    )
    assert seen == [[], {name: [True, True, "vtex_tracking"] for name in LAZY}]
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        vtex_tracking.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize("module", sorted(set(LAZY.values())))
def test_a_lazy_module_imported_directly_presents_its_names(module: str) -> None:
    """A module imported by another route than the package's attribute (the CLI, Celery, a
    user reaching into it) still gives its public names the package's name."""
    names = sorted(name for name, where in LAZY.items() if where == module)
    modules = _fresh(
        f"""
        import json
        import vtex_tracking.{module} as module
        print(json.dumps([getattr(module, name).__module__ for name in {names!r}]))
        """
    )
    assert modules == ["vtex_tracking"] * len(names)


def test_lazy_classes_unpickle_in_a_process_that_never_named_them() -> None:
    """A pickle of a result, a summary, an order or a journal setting (Celery, multiprocessing)
    loads in a fresh process through the package's lazy names."""
    from vtex_tracking import Journal, Order, Package, PushResult, PushSummary

    values = [
        PushResult(0, None, error=ValueError("bad"), account="acme"),
        PushSummary(1, 0, 1, {"invalid": 1}, 0.5, failures=()),
        Order("o-1", packages=(Package("NF-1"),)),
        Journal("run.journal"),
    ]
    seen = _fresh(
        f"""
        import json, pickle, sys
        values = pickle.loads({pickle.dumps(values)!r})
        print(json.dumps([repr(value) for value in values]))
        """
    )
    assert seen == [repr(value) for value in values]


def test_classes_moved_out_of_models_are_still_found_there() -> None:
    """``_models`` still answers for the read-back and report classes that moved to modules
    of their own (``from ._models import PushResult`` in the push engine)."""
    from vtex_tracking import _models

    for name in ("AccountMetrics", "AccountSummary", "CourierEvent", "CourierStatus", "Order",
                 "Package", "PushResult", "PushSummary"):  # fmt: skip
        assert getattr(_models, name) is getattr(vtex_tracking, name)
    with pytest.raises(AttributeError):
        _models.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_the_converter_is_built_with_the_first_client() -> None:
    """Making a client builds the wire converter (its first request then pays nothing for it,
    and needs no file to import cattrs: ``test_fd_limit``)."""
    seen = _fresh(
        """
        import json, sys
        from vtex_tracking import AsyncTrackingClient
        before = "cattrs" in sys.modules
        AsyncTrackingClient("acme", "key", "token")
        print(json.dumps([before, "cattrs" in sys.modules]))
        """
    )
    assert seen == [False, True]


def test_the_converter_is_built_on_first_use() -> None:
    """Without a client, cattrs is loaded by the first encode, not by the import, and the
    bytes are the same whichever call builds the converter."""
    seen = _fresh(
        """
        import datetime as dt, json, sys
        from vtex_tracking import TrackingEvent, TrackingStatus
        from vtex_tracking._serde import decode_status, encode_status
        before = "cattrs" in sys.modules
        status = TrackingStatus([TrackingEvent("Natal", "RN", "Postado", dt.date(2026, 11, 20))])
        body = encode_status(status)
        print(json.dumps([before, "cattrs" in sys.modules, body.decode(),
                          encode_status(decode_status(body)) == body]))
        """
    )
    assert seen == [
        False,
        True,
        '{"events":[{"city":"Natal","state":"RN","description":"Postado","date":"2026-11-20"}],'
        '"isDelivered":false,"deliveredDate":null}',
        True,
    ]
