"""``python -m lggdemo.train``: the command line of the trainer, its listeners, signals and exit codes."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import lggdemo.train as package
from lggdemo.train.config import OPTIONS, TrainConfig, TrainError, config_from_options
from lggdemo.train.distributed import describe_failure, env_is_main, finish
from lggdemo.train.events import CANCELLED, ERROR, EXIT_CANCELLED, EXIT_FAILED, EXIT_INVALID, EXIT_OK
from lggdemo.train.pipeline import run
from lggdemo.train.progress import Cancelled, JsonlWriter, ProgressCallback, TqdmReporter


def build_parser() -> argparse.ArgumentParser:
    """The options of :class:`TrainConfig` (its field metadata is the one schema), plus ``--no-bar``."""
    ap = argparse.ArgumentParser(prog="lggdemo-train", description=package.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, option in OPTIONS.items():
        s = option.setting
        if s.negate:
            ap.add_argument(s.flag, dest=name, action="store_const", const=True, default=None, help=s.help)
        else:
            ap.add_argument(s.flag, dest=name, type=s.type, choices=list(s.choices) or None, default=None,
                            metavar=s.metavar, help=s.help)
    ap.add_argument("--no-bar", action="store_true", help="no terminal progress bar")
    ap.add_argument("--dry-run", action="store_true",
                    help="train nothing: print the precision this machine would use and how long the run would take "
                         "(a few timed training steps, cached per CPU)")
    ap.add_argument("--refresh-estimate", action="store_true", help="with --dry-run: time the steps again")
    return ap


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return config_from_options(vars(args))


def dry_run(args: argparse.Namespace) -> int:
    """``--dry-run``: the settings checked, the precision chosen and the time estimate; nothing trained or written
    (except the probe's cache)."""
    from lggdemo.device import DeviceError
    from lggdemo.train.estimate import plan_text

    try:
        cfg = config_from_args(args)
        cfg.validate()
        print(plan_text(cfg, refresh=args.refresh_estimate))
    except (TrainError, DeviceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dry_run:
        return dry_run(args)
    listeners: list[ProgressCallback] = []
    main_rank = env_is_main()  # under torchrun only rank 0 reports (the others train alongside it)
    writer = JsonlWriter(args.progress_file) if args.progress_file and main_rank else None
    if writer:
        listeners.append(writer)
    if not args.no_bar and main_rank:
        listeners.append(TqdmReporter())
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def emit(event: str, **payload: Any) -> None:
        for listener in listeners:
            listener({"event": event, "time": time.time(), **payload})

    try:
        cfg = config_from_args(args)
        run(cfg, listeners, stop)
        return EXIT_OK
    except TrainError as exc:
        emit(ERROR, message=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except Cancelled:
        emit(CANCELLED, message="stopped on request; the previous weights are unchanged")
        return EXIT_CANCELLED
    except Exception as exc:  # the job manager shows this line; the traceback goes to the log
        import traceback

        traceback.print_exc()
        emit(ERROR, message=describe_failure(exc))
        return EXIT_FAILED
    finally:
        if writer:
            writer.close()


def command() -> int:
    """The ``lggdemo-train`` script and ``python -m lggdemo.train``: :func:`main`, then each torchrun rank ends with
    rank 0's outcome (:func:`lggdemo.train.distributed.finish`)."""
    return finish(main())
