"""Overlap-tile prediction throughput against one untiled pass and the matmul peak.

Prints megapixels per second for a 2048x2048 image with the default CPU model, for
several tile sizes and for one untiled pass over the same image (a single tile), and the
achieved convolution GFLOP/s against this machine's single-precision matmul peak measured
in the same run. Medians over repeats; the machine is shared, so read the ratios.

    python benchmarks/bench_tiling.py [--size 2048] [--width 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from napari_unet import UNet, predict_tiled
from napari_unet.tiling import CPU_TILE, plan_tiles


def matmul_peak(n: int = 2048, repeats: int = 7) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / float(np.median(times)) / 1e9


def conv_flops(model: UNet, input_shape: tuple[int, int]) -> float:
    """Multiply-add FLOPs (x2) of all convolutions for one input tile."""
    total = 0.0

    def hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1]
        pixels = out.shape[-1] * out.shape[-2]
        if isinstance(mod, torch.nn.ConvTranspose2d):
            pixels //= mod.stride[0] * mod.stride[1]
        total += 2.0 * mod.in_channels * mod.out_channels * k * pixels

    convs = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, convs)]
    with torch.inference_mode():
        model.eval()(torch.zeros(1, model.in_channels, *input_shape))
    for h in hooks:
        h.remove()
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tiles", default="256,512,1024,default")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = UNet(base_channels=args.width, dropout=0.0)
    image = np.random.default_rng(0).random((args.size, args.size)).astype(np.float32)
    configs = {"untiled (1 tile)": args.size}
    for t in args.tiles.split(","):
        configs[f"tile {t}"] = None if t == "default" else int(t)
    flops = {}
    for name, tile in configs.items():
        grid = plan_tiles(model, image.shape, tile, max_step=None if tile else CPU_TILE)
        flops[name] = conv_flops(model, grid.input_shape) * grid.n_tiles
        flops[name + "/grid"] = grid
    predict_tiled(model, image[:256, :256])  # warm-up
    times = {name: [] for name in configs}
    peaks = []
    for _ in range(args.repeats):  # interleaved so that load changes hit every config alike
        peaks.append(matmul_peak())
        for name, tile in configs.items():
            t = time.perf_counter()
            predict_tiled(model, image, tile_shape=tile, device="cpu")
            times[name].append(time.perf_counter() - t)
    peak = float(np.median(peaks))
    untiled = float(np.median(times["untiled (1 tile)"]))
    mp = args.size**2 / 1e6
    print(f"# overlap-tile prediction, {args.size}x{args.size}, base width {args.width}")
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"matmul peak (fp32, 2048^3, median): {peak:.0f} GFLOP/s\n")
    print(
        "| configuration | tile input | tiles | median s | MP/s | vs untiled | conv GFLOP/s "
        "| of matmul peak |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in configs:
        t = float(np.median(times[name]))
        grid = flops[name + "/grid"]
        gf = flops[name] / t / 1e9
        print(
            f"| {name} | {grid.input_shape[0]}x{grid.input_shape[1]} | {grid.n_tiles} | "
            f"{t:.2f} | {mp / t:.2f} | {untiled / t:.2f} | {gf:.0f} | {gf / peak:.2f} |"
        )


if __name__ == "__main__":
    main()
