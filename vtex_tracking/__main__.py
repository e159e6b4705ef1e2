"""``python -m vtex_tracking``: the same as the ``vtex-tracking`` command, for where the
scripts folder is not on PATH (often on Windows)."""

# Guarded so that tools importing every module (documentation generators) do not run the CLI.
if __name__ == "__main__":
    from .cli import main

    raise SystemExit(main())
