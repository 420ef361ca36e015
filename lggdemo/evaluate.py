"""``python -m lggdemo.evaluate``: the evaluator (``lggdemo.evaluation.evaluate``), under its old name."""

from lggdemo.evaluation.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
