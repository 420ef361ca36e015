"""``python -m lggdemo.crossval``: the cross-validation pooler (``lggdemo.evaluation.crossval``), under its old name."""

from lggdemo.evaluation.crossval import main

if __name__ == "__main__":
    raise SystemExit(main())
