"""``python -m lggdemo.train`` (also as torchrun's ``-m lggdemo.train``: each rank ends with rank 0's outcome)."""

from lggdemo.train.cli import command

raise SystemExit(command())
