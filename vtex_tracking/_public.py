"""Public classes and functions report ``vtex_tracking`` as their module, as httpx's do.

They are defined in private modules (``_errors``, ``_models``...), so by default tracebacks,
``type()`` reprs, ``help()`` and pickles would name ``vtex_tracking._errors.RateLimitError``,
a path users are told not to import. Renaming the module has one trap: ``typing.get_type_hints``
(which cattrs, documentation tools and frameworks call) evaluates a class's string annotations
in the namespace of ``cls.__module__``, where ``dt``, ``Mapping`` or a private alias are not.
So each class's own annotations are evaluated first, where they were written.

Some public names live in modules imported on first use (``LAZY``): such a module presents its
own names when it is imported (``present_lazy``), whether through the package or directly.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping

__all__ = ["LAZY", "present_as", "present_lazy"]

#: Public names of the package whose module (in the package) is imported on first use, not
#: by ``import vtex_tracking``: what most programs never touch (accounts files, histories,
#: the journal and its SQLite, input readers, orders read back, a push's stream, results and
#: anyio, metrics).
LAZY: dict[str, str] = {
    "Account": "_accounts",
    "AccountMetrics": "_reports",
    "AccountProgress": "_progress",
    "AccountSummary": "_reports",
    "Accounts": "_accounts",
    "AsyncTrackingHistory": "_history",
    "CourierEvent": "_read_back",
    "CourierStatus": "_read_back",
    "Journal": "_remember",
    "JournalMismatchError": "_remember",
    "Order": "_read_back",
    "Package": "_read_back",
    "PushProgress": "_progress",
    "PushResult": "_reports",
    "PushStream": "_stream",
    "PushSummary": "_reports",
    "TrackingHistory": "_history",
    "UnchangedState": "_remember",
    "parse_update": "_read",
    "read_updates": "_read",
    "status_from_events": "_history_rules",
}


def present_as(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Make the classes and functions among ``namespace[name]`` report ``module`` (the package
    that re-exports them) as theirs; other names are left alone."""
    public = [namespace[name] for name in names if not name.startswith("__")]
    classes = [obj for obj in public if isinstance(obj, type)]
    # Every class's annotations are evaluated before any module is renamed: a subclass's
    # hints include its bases', evaluated in each base's module.
    resolved = {cls: _own_annotations(cls) for cls in classes}
    for cls, own in resolved.items():
        if own is not None:
            cls.__annotations__ = own
    for obj in public:
        if isinstance(obj, (type, types.FunctionType)) and obj.__module__.startswith(module + "."):
            obj.__module__ = module


def _own_annotations(cls: type) -> dict[str, object] | None:
    """``cls``'s own annotations, evaluated (None when it has none)."""
    own = vars(cls).get("__annotations__")
    if not own:
        return None
    hints = typing.get_type_hints(cls, include_extras=True)
    return {name: hints[name] for name in own}


def present_lazy(namespace: Mapping[str, object]) -> None:
    """``present_as`` for a module of ``LAZY``, called at its end with its ``globals()``."""
    package, _, module = str(namespace["__name__"]).rpartition(".")
    present_as(package, namespace, [name for name, where in LAZY.items() if where == module])
