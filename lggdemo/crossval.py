"""``python -m lggdemo.crossval``: the cross-validation command line (``lggdemo.evaluation.crossval_cli``), under its old name."""

from lggdemo.evaluation.crossval_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
