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
from lggdemo.train.config import PRESETS, TASKS, TrainConfig, TrainError
from lggdemo.train.distributed import env_is_main
from lggdemo.train.pipeline import run
from lggdemo.train.progress import Cancelled, JsonlWriter, ProgressCallback, TqdmReporter


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m lggdemo.train", description=package.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", choices=TASKS, default="all")
    ap.add_argument("--data", default=None, help="kaggle_3m folder (default: the app's active dataset)")
    ap.add_argument("--out", default=None, help="weights folder to write (default: weights/)")
    ap.add_argument("--preset", choices=list(PRESETS), default="quick")
    ap.add_argument("--epochs", type=int, default=None, help="epochs for each model (overrides the preset)")
    ap.add_argument("--image-size", type=int, default=None, help="U-Net input side, a multiple of 32")
    ap.add_argument("--grade-image-size", type=int, default=None, help="grade crop side, a multiple of 32")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--samples-per-epoch", type=int, default=None, help="slices drawn per epoch (both models)")
    ap.add_argument("--encoder", default=None, help="smp encoder of the U-Net (e.g. resnet18, resnet34, resnet50)")
    ap.add_argument("--folds", type=int, default=None, help="grade k-fold CV over training patients (0 = off)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fold", type=_fold_arg, default=None, metavar="I/K",
                    help="validate on fold I of a k-fold patient partition (cross-validating a recipe), "
                         "instead of the held-out fraction")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--progress-file", default=None, help="append JSON-lines progress events here")
    ap.add_argument("--complete-from", default=None,
                    help="weights folder to copy the model not trained in this run from "
                         "(default: --init-from, else --out, else active)")
    ap.add_argument("--init-from", default=None,
                    help="weights folder whose U-Net this run continues (the refine preset); same patient split required")
    ap.add_argument("--no-epoch-validation", action="store_true",
                    help="skip the per-epoch validation curve (saves time; the weights are the same)")
    ap.add_argument("--no-bar", action="store_true", help="no terminal progress bar")
    return ap


def _fold_arg(text: str) -> tuple[int, int]:
    try:
        i, k = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/K such as 0/3, got {text!r}") from None
    return i, k


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig.from_preset(
        args.preset, task=args.task, data=args.data, out=args.out, image_size=args.image_size,
        grade_image_size=args.grade_image_size, batch_size=args.batch_size, encoder=args.encoder, folds=args.folds,
        device=args.device, seed=args.seed, fold=args.fold, threads=args.threads, progress_file=args.progress_file,
        complete_from=args.complete_from, init_from=args.init_from,
        epoch_validation=False if args.no_epoch_validation else None,
        seg_epochs=args.epochs, grade_epochs=args.epochs,
        seg_samples=args.samples_per_epoch, grade_samples=args.samples_per_epoch,
    )
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        return 0
    except TrainError as exc:
        emit("error", message=str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        emit("cancelled", message="stopped on request; the previous weights are unchanged")
        return 130
    except Exception as exc:  # the job manager shows this line; the traceback goes to the log
        import traceback

        traceback.print_exc()
        emit("error", message=f"{exc.__class__.__name__}: {exc}")
        return 1
    finally:
        if writer:
            writer.close()
