"""``python -m vtex_tracking.cli``: the same as the ``vtex-tracking`` command."""

from . import main

raise SystemExit(main())
