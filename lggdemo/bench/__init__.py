"""Speed, measured rather than promised: ``python -m lggdemo.bench`` (see ``lggdemo.bench.cli``)."""
