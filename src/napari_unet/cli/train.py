"""``napari-unet train``: train or fine-tune a U-Net on annotated images."""

from __future__ import annotations

import argparse
import signal
import sys

from tqdm import tqdm

from ..augment import AugmentConfig
from ..errors import NapariUnetError
from ..fileio import check_output_path, read_image
from ..layout import channel_count, check_same_channels, to_model_layout
from ..modelfile import load_model
from ..training import (
    TrainConfig,
    Trainer,
    TrainState,
    find_pairs,
    new_model,
    prepare_training_data,
)
from ..training.validation import compare_to_start
from .options import model_from_arg

__all__ = ["run"]


def _train_config(args: argparse.Namespace, base):
    changes = {}
    for name, value in (
        ("steps", args.steps),
        ("time_limit", args.time_limit),
        ("seed", args.seed),
        ("learning_rate", args.lr),
        ("optimizer", args.optimizer),
        ("base_channels", args.width),
        ("tile_size", args.tile),
        ("precision", args.precision),
        ("calibration_rules", args.calibration_rules),
    ):
        if value is not None:
            changes[name] = value
    if args.steps is not None and args.time_limit is None:
        changes["time_limit"] = None
    if args.time_limit is not None and args.steps is None:
        changes["steps"] = None
    if args.no_augment:
        changes["augment"] = AugmentConfig.identity()
    if args.complete:  # a resumed run keeps its own rule otherwise
        changes["complete"] = True
    return base.replace(**changes)


def _training_set(args: argparse.Namespace) -> tuple[list, list, list | None, list[str]]:
    """Images, labels, regions and names from --image/--labels/--region or --data."""
    if args.data is not None:
        if args.labels or args.region:
            raise NapariUnetError("With --data, the labels and regions come from the folder.")
        files = find_pairs(args.data)
        paths, label_paths, region_paths = files.images, files.labels, files.regions
    else:
        paths, label_paths, region_paths = args.image, args.labels or [], args.region
        if len(label_paths) != len(paths):
            raise NapariUnetError(
                f"Got {len(paths)} --image but {len(label_paths)} --labels; give one each."
            )
        if region_paths is not None and len(region_paths) != len(paths):
            raise NapariUnetError("Give one --region per --image, or none.")
    raw = [read_image(p) for p in paths]
    names = [p.name for p in paths]
    check_same_channels([channel_count(r) for r in raw], names)
    images = [to_model_layout(r, 1) for r in raw]
    labels = [read_image(p) for p in label_paths]
    regions = None
    if region_paths is not None and any(p is not None for p in region_paths):
        regions = [None if p is None else read_image(p) for p in region_paths]
    return images, labels, regions, names


def run(args: argparse.Namespace) -> int:
    """Train (or resume) and write the model; returns the exit status."""
    check_output_path(args.output, overwrite=args.overwrite or args.resume == args.output)
    if args.resume and args.start:
        raise NapariUnetError("Use either --resume or --from, not both.")
    if args.width is not None and args.resume:
        raise NapariUnetError("--width cannot change the architecture of a resumed run.")
    if args.width is not None and args.start != "scratch":
        raise NapariUnetError("--width sets the architecture of a new model; add --from scratch.")
    images, labels, regions, names = _training_set(args)
    if args.resume:
        checkpoint_model = load_model(args.resume)
        stored = (checkpoint_model.metadata.get("training") or {}).get("config")
        config = _train_config(args, TrainConfig.from_dict(stored))
        data = prepare_training_data(
            images, labels, regions, model=checkpoint_model, config=config, names=names
        )
        trainer = Trainer.resume(
            args.resume, data, config, checkpoint=args.output, device=args.device
        )
    else:
        scratch = args.start == "scratch"
        # a trained start model gets the lower fine-tuning learning rate
        config = _train_config(args, TrainConfig() if scratch else TrainConfig.fine_tune())
        if scratch:
            model = new_model(config, in_channels=1)
        else:
            model = model_from_arg(args.start)
        data = prepare_training_data(
            images, labels, regions, model=model, config=config, names=names
        )
        trainer = Trainer(model, data, config, checkpoint=args.output, device=args.device)

    def on_interrupt(signum, frame):
        if trainer.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)
        trainer.stop()

    print(trainer.precision.describe(), file=sys.stderr)
    bar = tqdm(total=1000, desc="train", file=sys.stderr, bar_format="{l_bar}{bar}| {postfix}")
    previous = signal.signal(signal.SIGINT, on_interrupt)
    last = None
    try:
        for event in trainer.run():
            last = event
            bar.n = int(event.fraction * 1000)
            post = f"step {event.step}"
            if event.loss is not None:
                post += f", loss {event.loss:.3f}"
            if event.validation is not None:
                post += f", val AP50 {event.validation.ap50:.2f}"
            if event.remaining is not None:
                post += f", {event.remaining:.0f} s left"
            if event.state is TrainState.CALIBRATING:
                post = event.message
            bar.set_postfix_str(post, refresh=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    if last is not None and last.state in (TrainState.DONE, TrainState.STOPPED):
        v = last.validation
        score = f" (validation AP50 {v.ap50:.2f}, mean IoU {v.mean_iou:.2f})" if v else ""
        print(f"{last.message} Model written to {args.output}{score}.", file=sys.stderr)
        if trainer.baseline is not None:
            verdict = compare_to_start(v, trainer.baseline)
            worse = "; it is worse, so keep using the start model" if verdict.worse else ""
            print(f"The new model {verdict.scores()}{worse}.", file=sys.stderr)
    return 0
