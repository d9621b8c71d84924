"""Training speed and time to quality, from scratch, on synthetic nuclei.

Run:  .venv/bin/python benchmarks/bench_training.py speed
      .venv/bin/python benchmarks/bench_training.py compare --group optimizer --seeds 0 1
      .venv/bin/python benchmarks/bench_training.py compare --group shape --seeds 0 1
      .venv/bin/python benchmarks/bench_training.py postprocess --seeds 0 1 2
      .venv/bin/python benchmarks/bench_training.py goal --seeds 0 1 2
      .venv/bin/python benchmarks/bench_training.py efficiency [--layers] [--reference SRC]

The task is the one a user faces: a 512 x 512 synthetic fluorescence image
(:mod:`napari_unet.synthetic`) with about 120 nuclei, of which the left half (about
60 cells) is annotated. The model is trained from scratch on that half and scored
(AP@0.5 and mean IoU, :func:`napari_unet.instance_scores`) on the right half, which
it never saw labels of, and on two fresh 256 x 256 images drawn with the same
settings. Prediction is :func:`predict_tiled` + :func:`labels_from_probabilities`.

``speed``
    Median seconds per training step (sampling and augmentation included) for
    architectures, tile and batch sizes, measured in alternation.
``compare``
    Trains several configurations for the same time budget. The clock is steps
    times seconds per step, the latter measured for all configurations *in
    alternation* at the start (sampling and augmentation included), so that other
    work on a shared machine neither favours one configuration nor eats into a
    budget: a run is a fixed number of steps and gives the same model every time.
    Every ``--every`` seconds of that clock the model is scored (not counted).
    Prints AP at some times, the first time AP@0.5 reached 0.9 on the other half,
    and the final scores, as a markdown table (medians over seeds; a seed draws
    another image and another initialisation).
``postprocess``
    Trains the default configuration for ``--budget`` seconds per seed and scores
    post-processing variants of :func:`labels_from_probabilities` on the same
    probabilities.
``efficiency``
    A whole training step of the default network (sampling, augmentation, weight map,
    forward, loss, backward, Adam) in GFLOP/s against the float32 ``torch.mm`` peak,
    the two measured in alternating blocks in one run (:func:`step_flops` says what is
    counted). ``--reference SRC`` alternates with the same steps run by another source
    tree in a worker process (before/after in one machine state); ``--layers`` adds
    each convolution's forward and backward alone.
``goal``
    The user's path end to end: :func:`napari_unet.train_model` with the default
    :class:`TrainConfig` and ``time_limit=150`` (validation included in the clock),
    then the default post-processing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from napari_unet import instance_scores, labels_from_probabilities, load_model, predict_tiled
from napari_unet.bundled import load_bundled_model
from napari_unet.synthetic import make_cells
from napari_unet.training import (
    TileSampler,
    TrainConfig,
    Trainer,
    new_model,
    prepare_training_data,
    train_model,
)

SHAPE = (512, 512)
N_CELLS = 120
FRESH_SHAPE = (256, 256)


# ------------------------------------------------------------------------------- the task


@dataclass
class Task:
    image: np.ndarray
    labels: np.ndarray
    region: np.ndarray  # annotated half
    fresh: list[tuple[np.ndarray, np.ndarray]]
    n_train_cells: int


def make_task(seed: int) -> Task:
    image, labels = make_cells(SHAPE, n_cells=N_CELLS, seed=1000 + seed)
    region = np.zeros(SHAPE, bool)
    region[:, : SHAPE[1] // 2] = True
    n_train = len(np.unique(labels[region])) - 1
    fresh = [make_cells(FRESH_SHAPE, seed=2000 + 10 * seed + k) for k in range(2)]
    return Task(image, labels, region, fresh, n_train)


def pooled(scores) -> dict[str, float]:
    """AP@0.5 and mean IoU pooled over several images (object counts add up)."""
    tp = sum(s.tp for s in scores)
    nt = sum(s.n_true for s in scores)
    npred = sum(s.n_pred for s in scores)
    iou = sum(s.mean_iou * s.n_true for s in scores)
    denom = nt + npred - tp
    return {"ap50": tp / denom if denom else 1.0, "mean_iou": iou / nt if nt else 1.0}


def probabilities(model, task: Task) -> list[np.ndarray]:
    """Foreground probabilities for the right half and each fresh image."""
    w = SHAPE[1] // 2
    out = [predict_tiled(model, task.image, device="cpu")[:, :, w:]]
    out += [predict_tiled(model, img, device="cpu") for img, _ in task.fresh]
    return out


def truths(task: Task) -> list[np.ndarray]:
    w = SHAPE[1] // 2
    return [task.labels[:, w:]] + [lab for _, lab in task.fresh]


def score(probs, task: Task, **pp) -> dict[str, float]:
    """Scores on the other half (``half``) and the fresh images (``fresh``)."""
    s = [
        instance_scores(t, labels_from_probabilities(p, **pp)) for p, t in zip(probs, truths(task))
    ]
    half, fresh = pooled(s[:1]), pooled(s[1:])
    return {
        "half_ap": half["ap50"],
        "half_iou": half["mean_iou"],
        "fresh_ap": fresh["ap50"],
        "fresh_iou": fresh["mean_iou"],
    }


# ------------------------------------------------------------------------------ configurations

BASE = dict(validation_fraction=0.0)

GROUPS: dict[str, dict[str, dict]] = {
    "optimizer": {
        "adam 1e-3 cosine": dict(optimizer="adam", learning_rate=1e-3, schedule="cosine"),
        "adam 1e-3 constant": dict(optimizer="adam", learning_rate=1e-3, schedule="constant"),
        "adam 3e-3 cosine": dict(optimizer="adam", learning_rate=3e-3, schedule="cosine"),
        "adam 3e-4 cosine": dict(optimizer="adam", learning_rate=3e-4, schedule="cosine"),
        "sgd 0.99 1e-3 cosine": dict(optimizer="sgd", learning_rate=1e-3, schedule="cosine"),
        "sgd 0.99 3e-3 cosine": dict(optimizer="sgd", learning_rate=3e-3, schedule="cosine"),
        "sgd 0.99 1e-2 cosine": dict(optimizer="sgd", learning_rate=1e-2, schedule="cosine"),
        "sgd 0.99 1e-2 constant": dict(optimizer="sgd", learning_rate=1e-2, schedule="constant"),
        "sgd 0.99 3e-2 cosine": dict(optimizer="sgd", learning_rate=3e-2, schedule="cosine"),
    },
    "lr": {
        "adam 3e-3 cosine": dict(optimizer="adam", learning_rate=3e-3, schedule="cosine"),
        "adam 3e-3 cosine, old sampler": dict(learning_rate=3e-3, sampler="edge"),
        "adam 3e-3 constant": dict(optimizer="adam", learning_rate=3e-3, schedule="constant"),
        "adam 1e-3 cosine": dict(optimizer="adam", learning_rate=1e-3, schedule="cosine"),
        "adam 1e-2 cosine": dict(optimizer="adam", learning_rate=1e-2, schedule="cosine"),
        "sgd 0.99 1e-2 cosine": dict(optimizer="sgd", learning_rate=1e-2, schedule="cosine"),
    },
    "finetune": {
        "from scratch, defaults": {},
        "bundled, adam 3e-3 constant": {"from": "bundled", "learning_rate": 3e-3},
        "bundled, adam 1e-3 constant": {"from": "bundled", "learning_rate": 1e-3},
        "bundled, adam 3e-4 constant": {"from": "bundled", "learning_rate": 3e-4},
    },
    "shape": {
        "tile 316": dict(tile_size=316),
        "tile 380": dict(tile_size=380),
        "tile 444": dict(tile_size=444),
        "tile 572": dict(tile_size=572),
        "tile 316 batch 2": dict(tile_size=316, batch_size=2),
        "tile 380 batch 2": dict(tile_size=380, batch_size=2),
        "width 8": dict(base_channels=8),
        "width 32": dict(base_channels=32),
    },
}


class _EdgeSampler(TileSampler):
    """The earlier sampler: windows may hang over the annotated extent."""

    def _window(self, p: int, lo: int, hi: int, o: int) -> int:
        return p - int(self.rng.integers(o))


@dataclass
class Run:
    name: str
    trainer: Trainer
    budget: float  # seconds
    seconds_per_step: float = 0.0
    step_times: list[float] = field(default_factory=list)
    history: list[tuple[float, int, dict]] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return self.trainer.step

    @property
    def budget_steps(self) -> int:
        return max(1, round(self.budget / self.seconds_per_step))

    @property
    def clock(self) -> float:
        """Training time so far: steps times the measured seconds per step."""
        return self.steps * self.seconds_per_step


def start_run(
    name: str, changes: dict, task: Task, seed: int, budget: float, start: str | None = None
) -> Run:
    edge = changes.get("sampler") == "edge"
    from_model = changes.get("from")
    changes = {k: v for k, v in changes.items() if k not in ("sampler", "from")}
    cfg = TrainConfig(**{**BASE, **changes, "seed": seed, "steps": None, "time_limit": budget})
    if from_model:
        model = load_model(start) if start else load_bundled_model()
    else:
        model = new_model(cfg)
    data = prepare_training_data(task.image, task.labels, task.region, model=model, config=cfg)
    trainer = Trainer(model, data, cfg, device="cpu")
    if edge:
        t = trainer.sampler
        trainer.sampler = _EdgeSampler(t.data, t.input_size, t.output_size, t.augment, t.rng)
    return Run(name, trainer, budget)


def _step(run: Run, fraction: float) -> float:
    t0 = time.perf_counter()
    run.trainer.train_step(run.trainer.learning_rate_at(fraction))
    return time.perf_counter() - t0


def measure_speed(runs: list[Run], rounds: int) -> None:
    """Seconds per step of each run, measured in alternation (these steps train too).

    The first step of each run (allocation, warm-up) is not timed. The steps use
    the learning rate of the start of the schedule; they are a small part of the budget.
    """
    for r in runs:
        _step(r, 0.0)
    for _ in range(rounds):
        for r in runs:
            r.step_times += [_step(r, 0.0) for _ in range(2)]
    for r in runs:
        r.seconds_per_step = float(np.median(r.step_times))


def train_to_budget(run: Run, every: float, task: Task) -> None:
    """Train to the step budget, scoring every ``every`` seconds of the clock."""
    every_steps = max(1, round(every / run.seconds_per_step))
    if not run.history:  # where it starts (zero-shot for a pretrained model)
        run.history.append((0.0, 0, score(probabilities(run.trainer.model, task), task)))
    while run.steps < run.budget_steps:
        _step(run, run.steps / run.budget_steps)
        if run.steps % every_steps == 0 or run.steps == run.budget_steps:
            probs = probabilities(run.trainer.model, task)
            run.history.append((run.clock, run.steps, score(probs, task)))
    run.probs = probs


def first_time(history, key: str, goal: float) -> float | None:
    for t, _, s in history:
        if s[key] >= goal:
            return t
    return None


def at_time(history, t_want: float, key: str) -> float:
    """Score of the last evaluation at or before ``t_want`` seconds."""
    best = history[0][2][key]
    for t, _, s in history:
        if t <= t_want + 1e-9:
            best = s[key]
    return best


def cmd_compare(args) -> None:
    configs = GROUPS[args.group] if args.group != "custom" else {}
    names = args.only or list(configs)
    results: dict[str, list[Run]] = {n: [] for n in names}
    for seed in args.seeds:
        task = make_task(seed)
        print(f"seed {seed}: {task.n_train_cells} annotated cells", flush=True)
        runs = [start_run(n, configs[n], task, seed, args.budget, args.model) for n in names]
        measure_speed(runs, args.speed_rounds)
        for r in runs:
            train_to_budget(r, args.every, task)
        for r in runs:
            results[r.name].append(r)
            h = r.history[-1][2]
            print(
                f"  {r.name:24s} steps {r.steps:5d}  half AP {h['half_ap']:.3f}  "
                f"fresh AP {h['fresh_ap']:.3f}  t(0.9) {first_time(r.history, 'half_ap', 0.9)}",
                flush=True,
            )
    print_compare(results, args)


def _fmt(x, digits=2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_compare(results: dict[str, list[Run]], args) -> None:
    marks = [t for t in (0, 30, 60, 90) if t < args.budget]
    head = (
        ["configuration", "steps/s"]
        + [f"half AP @{t}s" for t in marks]
        + [f"half AP @{args.budget:g}s", "half IoU", "fresh AP", "t(AP>=0.9) s", "reached"]
    )
    print()
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for name, runs in results.items():
        sps = np.median([r.steps / r.clock for r in runs])
        row = [name, f"{sps:.1f}"]
        for t in marks:
            row.append(_fmt(np.median([at_time(r.history, t, "half_ap") for r in runs])))
        last = [r.history[-1][2] for r in runs]
        row.append(_fmt(np.median([s["half_ap"] for s in last])))
        row.append(_fmt(np.median([s["half_iou"] for s in last])))
        row.append(_fmt(np.median([s["fresh_ap"] for s in last])))
        times = [first_time(r.history, "half_ap", 0.9) for r in runs]
        reached = [t for t in times if t is not None]
        # median with "never" counted as infinitely late
        ordered = sorted(t if t is not None else np.inf for t in times)
        med = ordered[len(ordered) // 2] if len(ordered) % 2 else None
        if len(ordered) % 2 == 0:
            a, b = ordered[len(ordered) // 2 - 1], ordered[len(ordered) // 2]
            med = (a + b) / 2 if np.isfinite(b) else None
        elif not np.isfinite(med):
            med = None
        row.append(_fmt(med, 0))
        row.append(f"{len(reached)}/{len(times)}")
        print("| " + " | ".join(row) + " |")
    print(
        f"\nMedians over seeds {list(args.seeds)}; budget {args.budget:g} s of training "
        f"(cosine schedules anneal over it); scored every {args.every:g} s. "
        f"{_machine()}"
    )


# ---------------------------------------------------------------------------- speed


SPEED = [
    ("width 8, tile 380", dict(base_channels=8, tile_size=380)),
    ("width 16, tile 316", dict(tile_size=316)),
    ("width 16, tile 380", dict(tile_size=380)),
    ("width 16, tile 444", dict(tile_size=444)),
    ("width 16, tile 572", dict(tile_size=572)),
    ("width 16, tile 380, batch 2", dict(tile_size=380, batch_size=2)),
    ("width 32, tile 380", dict(base_channels=32, tile_size=380)),
    ("width 64, tile 572 (paper)", dict(base_channels=64, tile_size=572)),
]


def cmd_speed(args) -> None:
    image, labels = make_cells(SHAPE, n_cells=N_CELLS, seed=1000)
    trainers = []
    for name, changes in SPEED:
        if "paper" in name and not args.paper:
            continue
        cfg = TrainConfig(**{**BASE, **changes, "steps": 10})
        model = new_model(cfg)
        data = prepare_training_data(image, labels, model=model, config=cfg)
        tr = Trainer(model, data, cfg, device="cpu")
        tr.train_step(cfg.learning_rate)  # warm-up, not timed
        trainers.append((name, tr, []))
    for _ in range(args.repeats):
        for _, tr, times in trainers:
            t0 = time.perf_counter()
            tr.train_step(tr.config.learning_rate)
            times.append(time.perf_counter() - t0)
    print("| configuration | output tile | s/step | steps/s | output Mpx/s |")
    print("|---|---|---|---|---|")
    for name, tr, times in trainers:
        s = float(np.median(times))
        o = tr.output_size
        mpx = tr.config.batch_size * o * o / s / 1e6
        print(f"| {name} | {o}x{o} | {s:.3f} | {1 / s:.1f} | {mpx:.2f} |")
    print(f"\nMedians of {args.repeats} alternated steps each. {_machine()}")


# ---------------------------------------------------------------------- post-processing

POSTPROCESS = {
    "components (before)": dict(method="components"),
    "watershed h=0.5, smoothing 1.5 (default)": dict(),
    "watershed h=0.25": dict(h=0.25),
    "watershed h=1": dict(h=1.0),
    "watershed h=2": dict(h=2.0),
    "watershed smoothing 0": dict(smoothing=0.0),
    "watershed smoothing 1": dict(smoothing=1.0),
    "watershed smoothing 2": dict(smoothing=2.0),
    "watershed threshold 0.4": dict(threshold=0.4),
    "watershed threshold 0.6": dict(threshold=0.6),
}


def cmd_postprocess(args) -> None:
    rows: dict[str, list[dict]] = {n: [] for n in POSTPROCESS}
    for seed in args.seeds:
        task = make_task(seed)
        run = start_run("default", {}, task, seed, args.budget)
        measure_speed([run], 3)
        train_to_budget(run, args.budget, task)
        for name, pp in POSTPROCESS.items():
            rows[name].append(score(run.probs, task, **pp))
        print(f"seed {seed}: {run.steps} steps", flush=True)
    print("\n| post-processing | half AP@0.5 | half mean IoU | fresh AP@0.5 | fresh mean IoU |")
    print("|---|---|---|---|---|")
    for name, scores in rows.items():
        cells = [
            np.median([s[k] for s in scores])
            for k in ("half_ap", "half_iou", "fresh_ap", "fresh_iou")
        ]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    print(
        f"\nSame probabilities for every row: default TrainConfig, {args.budget:g} s from scratch; "
        f"medians over seeds {list(args.seeds)}. {_machine()}"
    )


# ----------------------------------------------------------------------------- goal


def cmd_goal(args) -> None:
    rows = []
    for seed in args.seeds:
        task = make_task(seed)
        cfg = TrainConfig(seed=seed, steps=None, time_limit=args.budget)
        t0 = time.perf_counter()
        model = train_model(task.image, task.labels, task.region, config=cfg, device="cpu")
        wall = time.perf_counter() - t0
        s = score(probabilities(model, task), task)
        steps = model.metadata["training"]["steps"]
        rows.append((seed, task.n_train_cells, steps, wall, s))
        print(f"seed {seed}: {s}", flush=True)
    print(
        "\n| seed | annotated cells | steps | wall s | half AP@0.5 | half mean IoU | fresh AP@0.5 |"
    )
    print("|---|---|---|---|---|---|---|")
    for seed, n, steps, wall, s in rows:
        print(
            f"| {seed} | {n} | {steps} | {wall:.0f} | {s['half_ap']:.3f} | {s['half_iou']:.3f} "
            f"| {s['fresh_ap']:.3f} |"
        )
    med = {k: np.median([r[4][k] for r in rows]) for k in rows[0][4]}
    print(
        f"| median | | | | {med['half_ap']:.3f} | {med['half_iou']:.3f} | {med['fresh_ap']:.3f} |"
    )
    print(f"\ntrain_model(time_limit={args.budget:g}) with the default TrainConfig. {_machine()}")


# ------------------------------------------------------------------------- efficiency


def step_flops(model, input_size: int, batch: int = 1) -> tuple[float, list[dict]]:
    """FLOPs of one training step of ``model`` on ``batch`` tiles of ``input_size``, and per layer.

    Counted: every convolution (3x3, the 2x2 up-convolutions, the 1x1 head) as
    multiply-adds x 2 for the forward, x 2 more for the weight gradient and x 2 more
    for the input gradient, except the first layer, whose input needs no gradient.
    Not counted: ReLU, pooling, crops, concatenation, loss, optimizer, sampling,
    augmentation, weight map (they are the step's overhead). Output shapes come from
    one forward pass with hooks; the multiply-adds from them are exact.
    """
    layers: list[dict] = []
    hooks = []

    def hook(module, inp, out):
        cin, cout = module.in_channels, module.out_channels
        kh, kw = module.kernel_size
        if isinstance(module, torch.nn.ConvTranspose2d):
            # each input pixel writes a kh x kw patch of every output channel
            macs = inp[0].shape[0] * inp[0].shape[-2] * inp[0].shape[-1] * cin * cout * kh * kw
        else:
            macs = out.shape[0] * out.shape[-2] * out.shape[-1] * cin * cout * kh * kw
        layers.append({"module": module, "name": "", "in": tuple(inp[0].shape), "macs": macs})

    names = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            names[m] = name
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(torch.zeros(batch, model.in_channels, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
    total = 0.0
    for i, layer in enumerate(layers):
        layer["name"] = names[layer["module"]]
        layer["first"] = i == 0
        layer["fwd"] = 2.0 * layer["macs"]
        layer["bwd"] = 2.0 * layer["macs"] * (1 if i == 0 else 2)
        total += layer["fwd"] + layer["bwd"]
    return total, layers


def _mm_seconds(a: torch.Tensor, b: torch.Tensor, reps: int) -> float:
    """Median seconds of ``a @ b`` over ``reps`` products."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _layer_table(model, layers, reps: int, mm) -> list[tuple]:
    """Forward and backward time of each convolution alone (its own input, same layout)."""
    rows = []
    for layer in layers:
        m = layer["module"]
        x = torch.randn(layer["in"]).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(not layer["first"])
        m(x).sum().backward()  # warm-up: oneDNN picks its kernels on the first call
        fwd, bwd, peaks = [], [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            y = m(x)
            t1 = time.perf_counter()
            g = torch.ones_like(y)
            t2 = time.perf_counter()
            y.backward(g)
            t3 = time.perf_counter()
            fwd.append(t1 - t0)
            bwd.append(t3 - t2)
            peaks.append(mm())
        m.zero_grad(set_to_none=True)
        rows.append(
            (
                layer["name"],
                "x".join(str(s) for s in layer["in"][1:]),
                m.out_channels,
                float(np.median(fwd)),
                float(np.median(bwd)),
                layer["fwd"],
                layer["bwd"],
                float(np.median(peaks)),
            )
        )
    return rows


def _efficiency_trainer(tile: int) -> Trainer:
    image, labels = make_cells(SHAPE, n_cells=N_CELLS, seed=1000)
    cfg = TrainConfig(**{**BASE, "tile_size": tile, "steps": 10})
    model = new_model(cfg)
    data = prepare_training_data(image, labels, model=model, config=cfg)
    tr = Trainer(model, data, cfg, device="cpu")
    for _ in range(2):  # warm-up steps (allocation, kernel choice), not timed
        tr.train_step(cfg.learning_rate)
    return tr


def _timed_steps(tr: Trainer, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        tr.train_step(tr.config.learning_rate)
        times.append(time.perf_counter() - t0)
    return times


def cmd_worker(args) -> None:
    """Training steps on request, for ``efficiency --reference`` (another source tree)."""
    tr = _efficiency_trainer(args.tile)
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(_timed_steps(tr, int(line))), flush=True)


class _Reference:
    """The same training steps run by another napari-unet source tree, in a subprocess."""

    def __init__(self, src: str, tile: int, env: list[str] = ()) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.path.abspath(src),
            **dict(e.split("=", 1) for e in env),
        }
        cmd = [sys.executable, __file__, "worker", "--tile", str(tile)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the reference worker in {src} did not start")

    def steps(self, n: int) -> list[float]:
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def cmd_efficiency(args) -> None:
    """Whole training steps against the float32 matmul peak, measured interleaved."""
    tr = _efficiency_trainer(args.tile)
    flops, layers = step_flops(tr.model, tr.input_size, tr.config.batch_size)
    n = args.matrix
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up

    def mm_rate() -> float:
        return 2.0 * n**3 / _mm_seconds(a, b, 1)

    ref = _Reference(args.reference, args.tile, args.reference_env) if args.reference else None
    times: dict[str, list[float]] = {"this tree": []}
    if ref:
        times["reference"] = []
    peaks = []
    try:
        for _ in range(args.rounds):
            if ref:
                times["reference"] += ref.steps(args.steps)
            times["this tree"] += _timed_steps(tr, args.steps)
            peaks += [mm_rate() for _ in range(args.mm)]
    finally:
        if ref:
            ref.close()
    peak = float(np.median(peaks))
    print("| code | tile | GFLOP/step | s/step | steps/s | GFLOP/s | matmul peak GFLOP/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ts in times.items():
        s = float(np.median(ts))
        rate = flops / s
        label = name if name == "this tree" else f"reference ({args.reference})"
        if name != "this tree" and args.reference_env:
            label += " with " + " ".join(args.reference_env)
        print(
            f"| {label} | {tr.input_size} -> {tr.output_size} | {flops / 1e9:.2f} | {s:.4f} | "
            f"{1 / s:.2f} | {rate / 1e9:.0f} | {peak / 1e9:.0f} "
            f"({min(peaks) / 1e9:.0f}-{max(peaks) / 1e9:.0f}) | **{rate / peak:.2f}** |"
        )
    s = float(np.median(times["this tree"]))
    cfg = tr.config
    print(
        f"\nDefault TrainConfig (width {cfg.base_channels}, depth {cfg.depth}, batch "
        f"{cfg.batch_size}, {cfg.optimizer}); {args.rounds} rounds of {args.steps} steps "
        f"{'of each code ' if ref else ''}then {args.mm} torch.mm of {n}x{n} float32; medians "
        f"of {len(times['this tree'])} steps and {len(peaks)} products (min-max in brackets). "
        f"FLOPs: convolutions only (forward 2 MACs, weight grad 2 MACs, input grad 2 MACs "
        f"except the first layer). {_machine()}"
    )
    if not args.layers:
        return
    tr.model.train()
    rows = _layer_table(tr.model, layers, args.layer_reps, mm_rate)
    print(
        "\n| layer | input CxHxW | out C | fwd ms | fwd GFLOP/s | bwd ms | bwd GFLOP/s | "
        "share of step | peak GFLOP/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    tot = 0.0
    for name, shape, cout, f, bw, ff, bf, pk in rows:
        tot += f + bw
        print(
            f"| {name} | {shape} | {cout} | {f * 1e3:.1f} | {ff / f / 1e9:.0f} | "
            f"{bw * 1e3:.1f} | {bf / bw / 1e9:.0f} | {(f + bw) / s:.0%} | {pk / 1e9:.0f} |"
        )
    print(
        f"\nConvolutions alone: {tot * 1e3:.1f} ms of the {s * 1e3:.1f} ms step "
        f"({flops / tot / 1e9:.0f} GFLOP/s); the rest ({(s - tot) * 1e3:.1f} ms) is ReLU, "
        f"pooling, crops, concatenation, loss, optimizer, sampling and augmentation."
    )


def _machine() -> str:
    return (
        f"Machine: {platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--paper", action="store_true", help="include the paper's width 64 (slow)")
    p = sub.add_parser("compare")
    p.add_argument("--group", choices=sorted(GROUPS), default="optimizer")
    p.add_argument("--only", nargs="*", default=None, help="configurations of the group to run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--budget", type=float, default=150.0)
    p.add_argument("--every", type=float, default=15.0)
    p.add_argument("--speed-rounds", type=int, default=5, help="alternated speed rounds")
    p.add_argument("--model", default=None, help="start model of 'from' runs (default: bundled)")
    p = sub.add_parser("postprocess")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=float, default=150.0)
    p = sub.add_parser("goal")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--budget", type=float, default=150.0)
    p = sub.add_parser("efficiency")
    p.add_argument("--tile", type=int, default=380)
    p.add_argument("--rounds", type=int, default=9, help="alternated blocks")
    p.add_argument("--steps", type=int, default=5, help="training steps per block")
    p.add_argument("--mm", type=int, default=3, help="matrix products per block")
    p.add_argument("--matrix", type=int, default=2048, help="side of the square matrices")
    p.add_argument("--layers", action="store_true", help="also time each convolution alone")
    p.add_argument("--layer-reps", type=int, default=5)
    p.add_argument("--reference", default=None, help="src folder of the code to compare with")
    p.add_argument("--reference-env", nargs="*", default=[], help="KEY=VALUE for the reference")
    p = sub.add_parser("worker", help="internal: steps for efficiency --reference")
    p.add_argument("--tile", type=int, default=380)
    args = parser.parse_args()
    torch.manual_seed(0)
    {
        "speed": cmd_speed,
        "compare": cmd_compare,
        "postprocess": cmd_postprocess,
        "goal": cmd_goal,
        "efficiency": cmd_efficiency,
        "worker": cmd_worker,
    }[args.cmd](args)


if __name__ == "__main__":
    main()
