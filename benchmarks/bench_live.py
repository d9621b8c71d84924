"""Live training vs paint-then-Fine-tune: a simulated user, scored on held-out cells.

Run:  .venv/bin/python benchmarks/bench_live.py [--seed 0] [--pace 4] [--quick]
      .venv/bin/python benchmarks/bench_live.py --plot docs/images/bench_live.png

A scripted user paints one cell every ``--pace`` seconds, copied from the true
labels, starting from the bundled model:

- **live**: :class:`napari_unet.training.live.LiveTrainer` trains all along; the
  user looks at the live preview of the field in view (the whole training image)
  and paints the cell the preview gets most wrong (the unpainted true cell of
  lowest IoU with its best preview object). Painting and training overlap.
- **rounds**: the user paints ``--per-round`` random cells (their painting time is
  counted, the CPU idles meanwhile), then presses Fine-tune for ``--fine-tune``
  seconds (the Train dock's settings, only the time budget shorter), and so on.

- **live-nocal** (``--arms live-nocal``): live mode as it was before it calibrated
  its object rule: the start model's rule all along.

The user model: both users paint whole true cells. The live user looks at the
latest preview and paints where it is most wrong (a missed, cut or merged cell
lowers that cell's IoU, so all three are corrected); the round user sees
predictions only after each Fine-tune and paints random cells. With
``--live-choice pair`` the live user who has just painted a cell that the preview
merged with a neighbour paints that neighbour next (two touching rods seen as one
are painted both, so the weight map stresses the border between them); arm
``rounds-pair`` is the round user doing the same with the segmentation of the
training image after each Fine-tune. Neither user
corrects false objects on the background: napari-unet has no background brush,
and the one way to teach background away from painted cells, a region marked
completely annotated, needs every cell inside it painted, which in a dense
rods colony means painting those cells anyway. Neither arm draws a region.

Both are scored after every few painted cells on a held-out image of the same
domain (AP@0.5 of the whole image with the model's rule); the scoring time is
not counted. An arm stops once it reaches ``--target`` (the same rule for
both). The clock is simulated (:data:`STEP_SECONDS` a step) and live mode reads
it too (``LiveTrainer(clock=...)``), so its previews and calibrations fall at the
same steps whatever the machine's load; each calibration searches
``--calibration-rules`` labellings in both arms, not a share of the time (by
default 120: the whole grid, which live mode's share, 3 s of every 30, reaches
on this 256x256 image on a quiet dev-2c since the search shares its steps; a
20-s Fine-tune's 2-s share reaches about 70, so rounds get a little more than
theirs). With torch's
one thread a run then repeats exactly: differences between runs are the seeds'.
Both arms take the same steps per painted cell (``fine_tune / per_round``
seconds against ``pace``); a preview costs the live arm
:data:`PREVIEW_STEPS_PER_MPX` steps a megapixel (``--free-previews``: none);
calibrations cost neither arm steps. ``--settle N``: the live user
waits N steps before each score, so that the cells painted last are trained on
as long as in a round. Synthetic domains (``--domain``): ``rods`` (the default:
touching rod-shaped bacteria of :func:`napari_unet.synthetic.colonies.make_scene`,
a shape the bundled model never saw; it starts near AP@0.5 0.15 and fine-tuning
on a few dozen cells passes 0.8) or ``brightfield`` (``bench_rounds.py``'s
shifted domain: inverted contrast, which the sparse rule and a few hundred steps
do not reach 0.8 on). Also real HeLa nuclei (t0 painted from its labels, scored
on t19, from ``../shared/data/real`` or ``tests/data/real``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unet import instance_scores, labels_from_probabilities, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.metrics import iou_matrix
from napari_unet.synthetic.colonies import make_scene
from napari_unet.training import TrainConfig, Trainer, prepare_training_data, train_model
from napari_unet.training.first_sight import ForegroundMemory
from napari_unet.training.live import LiveState, LiveTrainer

sys.path.insert(0, str(Path(__file__).parent))
from bench_rounds import make_world  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REAL = [ROOT.parent / "shared" / "data" / "real", ROOT / "tests" / "data" / "real"]
# The simulated clock: one training step of the bundled model on a quiet dev-2c (about 5
# steps/s at 380-pixel tiles, docs/benchmarks.md "Rounds"; the 220-pixel tiles used here
# are faster still, so this is generous to neither arm). A loaded machine then changes
# how long the script runs, not what it measures.
STEP_SECONDS = 0.25
# A live preview of the field in view costs training steps (the same thread predicts it):
# on a quiet dev-2c a 256x256 preview took 1.85 steps, a 700x1100 one 19 (one thread).
PREVIEW_STEPS_PER_MPX = 25.0


@dataclass
class Point:
    """One score of a run: after ``cells`` painted cells and ``seconds`` of simulated time."""

    arm: str
    cells: int
    seconds: float
    steps: int
    ap50: float

    def __post_init__(self) -> None:
        print(f"POINT {self.arm} {self.cells} {self.seconds:.1f} {self.steps} {self.ap50:.4f}",
              flush=True)  # fmt: skip  # progress of a long run


def score(model, image: np.ndarray, truth: np.ndarray) -> float:
    """AP@0.5 of the whole held-out image with the model's rule."""
    pred = labels_from_probabilities(predict_tiled(model, image, device="cpu"), model=model)
    return instance_scores(truth, pred).ap50


def snapshot(args, arm: str, cells: int, model, labels: np.ndarray) -> None:
    """With ``--snapshots DIR``: the model and the painted labels at a score, for later study.

    ``DIR/<domain>_s<seed>_<arm>_<cells>.safetensors`` and ``..._labels.npy``
    (``bench_calibration_policy.py`` reads them).
    """
    if getattr(args, "snapshots", None) is None:
        return
    from napari_unet import save_model

    args.snapshots.mkdir(parents=True, exist_ok=True)
    stem = args.snapshots / f"{args.task_name}_s{args.seed}_{arm}_{cells:03d}"
    save_model(model, stem.with_suffix(".safetensors"))
    np.save(f"{stem}_labels.npy", labels)


def worst_cell(truth: np.ndarray, pred: np.ndarray, painted: set[int]) -> int:
    """The unpainted true cell the prediction gets most wrong (lowest best IoU)."""
    ids = np.unique(truth)
    ids = ids[ids > 0]
    best = iou_matrix(truth, pred).max(axis=1, initial=0.0)  # rows follow sorted ids
    order = [int(i) for i in ids[np.argsort(best, kind="stable")]]
    return next(i for i in order if i not in painted)


def merged_partner(truth: np.ndarray, pred: np.ndarray, cell: int, painted: set[int]) -> int | None:
    """The unpainted true cell that the prediction merged with ``cell``, if any.

    The prediction object covering most of ``cell``; of the other true cells, the
    unpainted one it covers most, when that is at least a third of the cell.
    """
    under = pred[truth == cell]
    under = under[under > 0]
    if not len(under):
        return None
    obj = pred == np.bincount(under).argmax()
    others = truth[obj & (truth != cell) & (truth > 0)]
    if not len(others):
        return None
    counts = np.bincount(others, minlength=int(truth.max()) + 1)
    areas = np.bincount(truth.ravel(), minlength=len(counts))
    share = np.where(areas > 0, counts / np.maximum(areas, 1), 0.0)
    for i in np.argsort(-share, kind="stable"):
        if share[i] < 1 / 3:
            return None
        if int(i) not in painted:
            return int(i)
    return None


def worst_pair(truth: np.ndarray, pred: np.ndarray, painted: set[int], last: list[int]) -> int:
    """The partner of the last painted cell when the preview merged them, else the worst cell.

    The user who sees two rods merged paints both (the weight map then stresses
    the border between them), one cell per pace as always.
    """
    partner = merged_partner(truth, pred, last[-1], painted) if last else None
    cell = partner if partner is not None else worst_cell(truth, pred, painted)
    last.append(cell)
    return cell


def cell_update(truth: np.ndarray, cell: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The box of one cell and the annotation's new values there (that cell painted)."""
    ys, xs = np.nonzero(truth == cell)
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    return box, (truth[box[0] : box[1], box[2] : box[3]] == cell)


def _live_user(task, args):
    """The live user's first cell, start labels and chooser of the next cell."""
    image, truth = task[:2]
    model = load_bundled_model()
    start_pred = labels_from_probabilities(predict_tiled(model, image, device="cpu"), model=model)
    ids = np.unique(truth)
    order = iter(np.random.default_rng(args.seed).permutation(ids[ids > 0]))  # rounds' order
    if args.live_choice == "random":  # the ablation: live training, the rounds' cells
        worst = lambda *_: int(next(order))  # noqa: E731
    elif args.live_choice == "pair":  # a merged pair: its partner next
        history: list[int] = []
        worst = lambda t, p, done: worst_pair(t, p, done, history)  # noqa: E731
    else:
        worst = worst_cell
    first = worst(truth, start_pred, set())
    labels = np.where(truth == first, first, 0).astype(np.int32)
    return model, start_pred, first, labels, worst


def run_live(task, args, arm: str = "live") -> list[Point]:
    """The live arm: the worst cell in view every ``pace`` simulated seconds, while training.

    The clock is simulated (see :data:`STEP_SECONDS`) and handed to the trainer: each
    step advances it by one quiet-machine step, each preview by its cost in steps
    (:data:`PREVIEW_STEPS_PER_MPX`, unless ``--free-previews``). Arm ``live-nocal``
    keeps the start model's rule (live mode before it calibrated). With ``--settle
    N`` the user waits N steps before each score (no painting meanwhile; the clock
    runs on).
    """
    image, truth, test_image, test_truth = task
    model, pred, first, labels, worst = _live_user(task, args)
    points = [Point(arm, 0, 0.0, 0, score(model, test_image, test_truth))]
    torch.manual_seed(args.seed)
    config = TrainConfig.fine_tune(seed=args.seed, tile_size=args.tile,
                                   calibrate=arm != "live-nocal",
                                   calibration_rules=args.calibration_rules)  # fmt: skip
    preview_steps = 0.0 if args.free_previews else PREVIEW_STEPS_PER_MPX * image.size / 1e6
    extra = 0.0  # steps that previews took from training
    live = LiveTrainer(model, image, labels, config=config, device="cpu",
                       preview_every=args.preview_every, calibrate_every=args.calibrate_every,
                       clock=lambda: STEP_SECONDS * (live.trainer.step + extra))  # fmt: skip
    live.request_preview(0, (0, image.shape[0], 0, image.shape[1]))
    painted, next_paint, settle_until = {first}, args.pace, None
    for event in live.run():
        if event.state is LiveState.PREVIEW:
            pred = event.preview.labels
            extra += preview_steps
        clock = STEP_SECONDS * (event.step + extra)
        due = len(painted) % args.every == 0 or len(painted) == args.cells
        if event.state is LiveState.STOPPED or clock < next_paint:
            continue
        if due and args.settle and settle_until is None:
            settle_until = event.step + args.settle  # the user waits, the model trains
        if settle_until is not None and event.step < settle_until:
            continue
        reached = False
        if due:
            ap = score(model, test_image, test_truth)
            points.append(Point(arm, len(painted), clock, event.step, ap))
            snapshot(args, arm, len(painted), model, labels)
            reached = ap >= args.target
        if len(painted) == args.cells or reached:
            live.stop()
        else:
            cell = worst(truth, pred, painted)
            box, mask = cell_update(truth, cell)
            labels[box[0] : box[1], box[2] : box[3]][mask] = cell
            live.update(0, box, labels[box[0] : box[1], box[2] : box[3]].copy())
            painted.add(cell)
            next_paint = (clock if settle_until is not None else next_paint) + args.pace
            settle_until = None
    return points


def run_rounds(task, args, arm: str = "rounds") -> list[Point]:
    """The round arm: ``per_round`` random cells painted, then Fine-tune, again and again.

    Arm ``rounds-pair``: the user looks at the segmentation of the training image
    after each Fine-tune and paints as the live user of ``--live-choice pair``
    does (the worst cell, then its partner when merged), ``per_round`` cells.
    """
    image, truth, test_image, test_truth = task
    model = load_bundled_model()
    ids = np.unique(truth)
    ids = ids[ids > 0]
    order = list(np.random.default_rng(args.seed).permutation(ids))
    points = [Point(arm, 0, 0.0, 0, score(model, test_image, test_truth))]
    clock, steps, n = 0.0, 0, 0
    budget = max(1, round(args.fine_tune / STEP_SECONDS))
    memory = ForegroundMemory()  # as the Train dock: every round judges the paint the same
    while n < args.cells:
        n = min(args.cells, n + args.per_round)
        if arm == "rounds-pair":  # the segmentation the user sees now decides the cells
            pred = labels_from_probabilities(predict_tiled(model, image, device="cpu"), model=model)
            painted, last = set(order[: n - args.per_round]), order[: n - args.per_round]
            order = list(order[: len(painted)])
            for _ in range(n - len(painted)):
                order.append(worst_pair(truth, pred, painted, last))
                painted.add(order[-1])
            order += [i for i in ids if i not in painted]
        clock += args.per_round * args.pace  # painting: the CPU waits for the user
        labels = np.where(np.isin(truth, order[:n]), truth, 0).astype(np.int32)
        config = TrainConfig.interactive().replace(
            steps=budget, time_limit=None, seed=args.seed, tile_size=args.tile,
            calibration_rules=args.calibration_rules,
        )  # fmt: skip
        model = train_model(image, labels, model=model, config=config, device="cpu", memory=memory)
        clock += budget * STEP_SECONDS
        steps += budget
        points.append(Point(arm, n, clock, steps, score(model, test_image, test_truth)))
        snapshot(args, arm, n, model, labels)
        if points[-1].ap50 >= args.target:
            break
    return points


def synthetic_task(seed: int, side: int, domain: str = "rods"):
    """Training image and labels, held-out image and labels of a synthetic domain."""
    if domain == "rods":
        train = make_scene("rods", (side, side), seed=2 * seed + 1)
        test = make_scene("rods", (side, side), seed=2 * seed + 2)
        return train[0], train[1].astype(np.int32), test[0], test[1].astype(np.int32)
    world = make_world(seed, (side, side))
    return world.train_image, world.train_labels, world.test_image, world.test_labels


def hela_task():
    """HeLa t0 (painted) and t19 (scored), with their labels; None when absent."""
    folder = next((f for f in REAL if (f / "hela_t0.tif").exists()), None)
    if folder is None:
        return None
    names = ("hela_t0.tif", "hela_t0_labels.tif", "hela_t19.tif", "hela_t19_labels.tif")
    arrays = [tifffile.imread(folder / name) for name in names]
    return arrays[0], arrays[1].astype(np.int32), arrays[2], arrays[3].astype(np.int32)


def step_time(task, args) -> float:
    """Real seconds of a training step here now (median of 9): how long the run will take."""
    image, truth = task[:2]
    config = TrainConfig.fine_tune(seed=args.seed, tile_size=args.tile)
    data = prepare_training_data(image, truth, model=(model := load_bundled_model()),
                                 config=config)  # fmt: skip
    trainer = Trainer(model, data, config, device="cpu")
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        trainer.train_step(config.learning_rate)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def first_reaching(points: list[Point], level: float) -> str:
    """When an arm first reaches ``level`` (cells and simulated seconds)."""
    hit = next((p for p in points if p.ap50 >= level), None)
    return f"{hit.cells} cells, {hit.seconds:.0f} s" if hit else "not reached"


def table(name: str, points: list[Point], target: float) -> None:
    print(f"\n{name}: arm | painted cells | simulated s | steps | AP@0.5 (held out)")
    for p in points:
        print(f"  {p.arm:6s} | {p.cells:3d} | {p.seconds:6.1f} | {p.steps:5d} | {p.ap50:.3f}")
    for arm in dict.fromkeys(p.arm for p in points):
        mine = [p for p in points if p.arm == arm]
        print(f"  {arm}: AP@0.5 >= {target} first at {first_reaching(mine, target)}; best "
              f"{max(p.ap50 for p in mine):.3f}")  # fmt: skip


def _panel(draw, ox, points, x_of, title, top, target):
    """One panel: AP@0.5 (0-1) against ``x_of(point)`` in 0..``top``, live and rounds."""
    w, h, m = 360, 240, 36
    colours = {"live": (200, 40, 40), "rounds": (40, 80, 200), "live-nocal": (230, 150, 40),
               "rounds-pair": (40, 160, 90), "live-pair": (200, 40, 40),
               "live-worst": (150, 60, 160)}  # fmt: skip
    draw.rectangle([ox + m, 10, ox + w - 10, h - m], outline="black")
    draw.text((ox + m + 4, 12), title, fill="black")
    for level in (0.5, target):
        y = h - m - level * (h - m - 10)
        draw.line([ox + m, y, ox + w - 10, y], fill=(200, 200, 200))
        draw.text((ox + 4, y - 6), f"{level:.1f}", fill="black")
    draw.text((ox + w - 40, h - m + 4), f"{top:.0f}", fill="black")
    draw.text((ox + m, h - m + 4), "0", fill="black")
    for i, arm in enumerate(dict.fromkeys(p.arm for p in points)):
        xy = [
            (ox + m + x_of(p) / top * (w - m - 10), h - m - p.ap50 * (h - m - 10))
            for p in points
            if p.arm == arm
        ]
        colour = colours.get(arm, (90, 90, 90))
        draw.line(xy, fill=colour, width=2)
        for x, y in xy:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((ox + w - 80, h - m - 16 - 12 * i), arm, fill=colour)


def logged_points(logs: list[Path]) -> dict[str, list[Point]]:
    """The synthetic runs' POINT lines of earlier outputs, by file name (HeLa's left out)."""
    runs = {}
    for log in logs:
        points = []
        for line in log.read_text().splitlines():
            if line.startswith("POINT "):
                arm, cells, seconds, steps, ap = line.split()[1:]
                if int(cells) == 0 and any(p.arm == arm for p in points):
                    break  # the HeLa part starts again from 0 cells
                points.append(Point(arm, int(cells), float(seconds), int(steps), float(ap)))
        runs[log.stem] = points
    return runs


def plot(path: Path, runs: dict[str, list[Point]], target: float) -> None:
    """A small PNG (drawn with PIL): per domain, AP@0.5 against painted cells and time."""
    from PIL import Image, ImageDraw

    w, h = 360, 240
    img = Image.new("RGB", (2 * w, h * len(runs)), "white")
    for k, (name, points) in enumerate(runs.items()):
        sub = Image.new("RGB", (2 * w, h), "white")
        draw = ImageDraw.Draw(sub)
        cells = max(p.cells for p in points) or 1
        secs = max(p.seconds for p in points) or 1.0
        _panel(draw, 0, points, lambda p: p.cells, f"{name}: vs painted cells", cells, target)
        _panel(
            draw, w, points, lambda p: p.seconds, f"{name}: vs the user's time (s)", secs, target
        )
        img.paste(sub, (0, k * h))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--domain", choices=("rods", "brightfield"), default="rods")
    parser.add_argument("--target", type=float, default=0.8, help="AP@0.5 that ends an arm")
    parser.add_argument("--arms", default="live,rounds",
                        help="arms: live, live-nocal, rounds, rounds-pair")  # fmt: skip
    parser.add_argument(
        "--live-choice", choices=("worst", "random", "pair"), default="worst",
        help="the live user's next cell: the worst in the preview, the rounds' random order, "
        "or the worst and then its partner when the preview merged them",
    )  # fmt: skip
    parser.add_argument("--pace", type=float, default=4.0, help="seconds per painted cell")
    parser.add_argument("--cells", type=int, default=40)
    parser.add_argument("--every", type=int, default=5, help="score after every N cells")
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--fine-tune", type=float, default=20.0, help="seconds per round")
    parser.add_argument("--preview-every", type=float, default=10.0, help="simulated s")
    parser.add_argument("--calibrate-every", type=float, default=30.0, help="simulated s")
    parser.add_argument("--calibration-rules", type=int, default=120,
                        help="labellings each calibration searches (both arms)")  # fmt: skip
    parser.add_argument("--free-previews", action="store_true",
                        help="previews cost the live arm no steps")  # fmt: skip
    parser.add_argument("--settle", type=int, default=0,
                        help="live: steps the user waits before each score")  # fmt: skip
    parser.add_argument("--tile", type=int, default=220, help="training tile side")
    parser.add_argument("--side", type=int, default=256, help="synthetic image side")
    parser.add_argument("--hela-cells", type=int, default=10)
    parser.add_argument("--hela-only", action="store_true", help="skip the synthetic domain")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="a smoke run (a few cells)")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--snapshots", type=Path, default=None,
                        help="keep the model and painted labels of every score here")  # fmt: skip
    parser.add_argument("--plot-logs", type=Path, nargs="+", default=None,
                        help="no run: plot these outputs' POINT lines, a row each")  # fmt: skip
    args = parser.parse_args()
    if args.plot_logs:
        plot(args.plot or Path("bench_live.png"), logged_points(args.plot_logs), args.target)
        return
    torch.set_num_threads(args.threads)
    if args.quick:
        args.cells, args.hela_cells, args.per_round, args.every = 4, 0, 2, 2
        args.fine_tune, args.pace, args.side = 2.0, 1.0, 128
    print(f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    arms = {"live": run_live, "rounds": run_rounds,
            "live-nocal": lambda t, a: run_live(t, a, "live-nocal"),
            "rounds-pair": lambda t, a: run_rounds(t, a, "rounds-pair")}  # fmt: skip
    chosen = [arms[a] for a in args.arms.split(",")]
    name = f"synthetic {args.domain}"
    args.task_name = args.domain
    task = synthetic_task(args.seed, args.side, args.domain)
    args.cells = min(args.cells, len(np.unique(task[1])) - 1)  # no more than the image holds
    print(f"a step takes {step_time(task, args):.3f} s here (simulated: {STEP_SECONDS} s)")
    runs = {} if args.hela_only else {name: [p for run in chosen for p in run(task, args)]}
    if runs:
        table(name, runs[name], args.target)
    hela = hela_task() if args.hela_cells else None
    if hela is not None:
        args.cells, args.task_name = args.hela_cells, "hela"
        runs["HeLa t0 -> t19"] = [p for run in chosen for p in run(hela, args)]
        table("HeLa: t0 painted, scored on t19", runs["HeLa t0 -> t19"], args.target)
    print(f"ran {time.perf_counter() - t0:.0f} s")
    if args.plot:
        plot(args.plot, runs, args.target)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
