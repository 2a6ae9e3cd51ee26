#!/usr/bin/env python3
"""Gamma index: vmat-native against pymedphys on the same dose pair, side by side in one run.

Makes a plan-like dose pair with NumPy (an SIB-like dose; the evaluated dose moved by about 1 mm, 1.5 % hotter,
with a slowly varying error of up to ±8 % and 1 % noise), writes both as .npy, runs `vmat-native gamma` on them and, when pymedphys can be imported,
`pymedphys.gamma` (gamma_shell) on the very same arrays with the same settings. Prints one JSON document: times,
speed-up, both pass rates, and how far the two Γ volumes are apart.

pymedphys is not a dependency of this project. Point PYMEDPHYS_SRC at a folder that holds the `pymedphys` package
(e.g. a checkout's `lib/`), or install it; without it only vmat-native runs and the report says pymedphys is absent.
pymedphys' default interpolation needs numba; where numba is missing its "scipy" interpolation is used (said in
the report).

usage: python3 bench/gamma_peer.py [--size 128] [--spacing 2.5] [--threads 2] [--dose 3] [--dta 3] [--cutoff 10] [--local]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import types

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plan_dose(n, spacing, shift, scale, ripple, noise, rng):
    axis = np.arange(n) * spacing - (n - 1) * spacing / 2
    z, y, x = np.meshgrid(axis - shift[0], axis - shift[1], axis - shift[2], indexing="ij")
    inner = np.sqrt(z**2 / 22.0**2 + y**2 / 25.0**2 + x**2 / 30.0**2)
    outer = np.sqrt(z**2 / 35.0**2 + (y - 8) ** 2 / 40.0**2 + x**2 / 45.0**2)
    bath = 25 * np.exp(-(z**2 + y**2 + x**2) / (2 * 70.0**2))
    high = 70 / (1 + np.exp(-(1 - inner) * 22 / 2.5))
    mid = 56 / (1 + np.exp(-(1 - outer) * 35 / 3.0))
    dose = np.maximum(high, np.maximum(mid, bath)) * scale
    # A slowly varying error of up to ±ripple, as a model's prediction has: some regions fail 3%/3 mm.
    dose = dose * (1 + ripple * np.sin(x / 15.0) * np.cos(y / 20.0))
    if noise:
        dose = dose * (1 + noise * (2 * rng.random(dose.shape) - 1))
    return dose.astype(np.float32)


def import_pymedphys_gamma():
    """gamma_shell from PYMEDPHYS_SRC (without running the package's heavy __init__) or an installed pymedphys."""
    source = os.environ.get("PYMEDPHYS_SRC")
    if source:
        package = os.path.join(source, "pymedphys")
        if not os.path.isdir(package):
            return None, f"PYMEDPHYS_SRC={source} holds no pymedphys package folder"
        stub = types.ModuleType("pymedphys")
        stub.__path__ = [package]
        sys.modules["pymedphys"] = stub
    try:
        from pymedphys._gamma.implementation.shell import gamma_shell  # noqa: PLC0415
    except ImportError as error:
        return None, f"pymedphys could not be imported ({error}); set PYMEDPHYS_SRC to a folder holding the pymedphys package"
    return gamma_shell, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--spacing", type=float, default=2.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dose", type=float, default=3)
    parser.add_argument("--dta", type=float, default=3)
    parser.add_argument("--cutoff", type=float, default=10)
    parser.add_argument("--local", action="store_true", help="local gamma")
    args = parser.parse_args()

    rng = np.random.RandomState(7)
    reference = plan_dose(args.size, args.spacing, (0, 0, 0), 1.0, 0.0, 0.0, rng)
    evaluated = plan_dose(args.size, args.spacing, (1.0, -0.6, 0.8), 1.015, 0.08, 0.01, rng)
    report = {
        "size": args.size,
        "spacing_mm": args.spacing,
        "criterion": f"{args.dose:g}%/{args.dta:g}mm",
        "cutoff_percent": args.cutoff,
        "threads": args.threads,
        "local": args.local,
    }

    with tempfile.TemporaryDirectory() as folder:
        ref_path, eval_path, out_path = (os.path.join(folder, name) for name in ("ref.npy", "eval.npy", "gamma.npy"))
        np.save(ref_path, reference)
        np.save(eval_path, evaluated)
        command = [
            "node", os.path.join(REPO, "dist", "cli", "main.js"), "gamma", ref_path, eval_path,
            "--spacing", f"{args.spacing},{args.spacing},{args.spacing}", "--dose", str(args.dose), "--dta", str(args.dta),
            "--cutoff", str(args.cutoff), "--threads", str(args.threads), "--device", "cpu", "--out", out_path, "--json",
        ] + (["--local"] if args.local else [])
        start = time.perf_counter()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU time of the whole vmat-native process (Node start, reading the .npy files and the gamma itself)
        ours_cpu = (children_after.ru_utime - children_before.ru_utime) + (children_after.ru_stime - children_before.ru_stime)
        if run.returncode != 0:
            sys.exit(f"vmat-native gamma failed: {run.stderr.strip()}")
        ours = json.loads(run.stdout)
        ours_gamma = np.load(out_path)
    report["vmat_native"] = {
        "seconds": ours["seconds"],
        "process_seconds": wall,
        "process_cpu_seconds": ours_cpu,
        "pass_rate_pct": ours["pass_rate_pct"],
        "n_evaluated": ours["n_evaluated"],
        "mean_gamma": ours["mean_gamma"],
    }

    gamma_shell, why = import_pymedphys_gamma()
    if gamma_shell is None:
        report["pymedphys"] = {"absent": why}
        print(json.dumps(report, indent=2))
        return
    try:
        import numba  # noqa: F401, PLC0415

        interp = "pymedphys"
    except ImportError:
        interp = "scipy"
    axes = tuple(np.arange(args.size) * args.spacing for _ in range(3))
    start = time.perf_counter()
    cpu_start = time.process_time()
    theirs = gamma_shell(
        axes, reference.astype(np.float64), axes, evaluated.astype(np.float64), args.dose, args.dta,
        lower_percent_dose_cutoff=args.cutoff, interp_fraction=10, max_gamma=2, local_gamma=args.local, interp_algo=interp,
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    valid = ~np.isnan(theirs)
    both = valid & ~np.isnan(ours_gamma)
    report["pymedphys"] = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "interpolation": interp,
        # pymedphys' own calculate_pass_rate counts Γ < 1; spec/gamma.md counts Γ <= 1: both are given.
        "pass_rate_pct": float(100 * np.sum(theirs[valid] <= 1) / np.sum(valid)),
        "pass_rate_pct_strict": float(100 * np.sum(theirs[valid] < 1) / np.sum(valid)),
        "n_evaluated": int(np.sum(valid)),
        "mean_gamma": float(np.mean(theirs[valid])),
    }
    report["agreement"] = {
        "pass_rate_difference_pct_points": abs(report["pymedphys"]["pass_rate_pct"] - ours["pass_rate_pct"]),
        "same_points_evaluated": bool(np.array_equal(valid, ~np.isnan(ours_gamma))),
        "max_abs_gamma_difference": float(np.max(np.abs(theirs[both] - ours_gamma[both]))) if both.any() else None,
        "points_differing_over_1e-4": int(np.sum(np.abs(theirs[both] - ours_gamma[both]) > 1e-4)),
    }
    # Wall-clock ratios, and the ratio of CPU time used (which a busy machine does not distort), for the gamma call
    # against the whole vmat-native process.
    report["speedup"] = seconds / ours["seconds"]
    report["speedup_process"] = seconds / wall
    report["speedup_cpu_time"] = cpu_seconds / ours_cpu
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
