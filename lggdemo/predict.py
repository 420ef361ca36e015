"""``python -m lggdemo.predict``: the whole-patient CLI (``lggdemo.inference.cli``), under its old name."""

from lggdemo.inference.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
