"""`attnverify bench`: run the selected benchmarks and format one table per benchmark."""

from __future__ import annotations

import os
import platform

import jax
from attnverify.verification.bench import measures as bench

from attnverify.errors import InputError
from attnverify.validate import names_or_all

KNOWN = ("theorem1", "compile", "cache", "scaling", "devices", "lime")


def _lime(quick: bool) -> dict:
    try:
        from attnverify.verification.bench.lime_vs_package import lime_benchmarks
    except ImportError:
        raise InputError("the LIME benchmarks are not available in this build") from None
    return lime_benchmarks(quick=quick)


def run_benchmarks(which: list[str], *, quick: bool = False) -> tuple[dict, str]:
    """Run benchmarks by name; returns (numbers, printable text)."""
    names = names_or_all(which, KNOWN, what="benchmark")
    devices = jax.device_count()
    machine = (f"{platform.machine()}, {os.cpu_count()} cores; JAX on {jax.default_backend()}: {devices} "
               f"device{'s' if devices > 1 else ''} ({jax.devices()[0].device_kind})")
    results: dict = {"machine": machine}
    lines = [f"machine: {machine}"]
    if "theorem1" in names:
        dc = bench.derive_and_compile()
        tp = bench.sweep_throughput(trials=2048 if quick else 8192)
        results["theorem1"] = {"derive_compile_paper_sizes": dc, "sweep": tp}
        lines += [
            "",
            "Theorem 1 (float64)",
            f"  derive (SymPy) + compile (jit) at paper sizes: {dc['derive_s']:.2f} s + {dc['compile_s']:.2f} s"
            f" = {dc['total_s']:.2f} s   (target < 10 s)",
            f"  sweep thm1.gradient, {tp['spec']}, {tp['devices']} device(s), best of {tp['repeats']}: "
            f"{tp['claim_models_per_s']:,.0f} models/s"
            f"   (target >= 10,000)",
            f"  jax.grad alone, same draws, one device:  {tp['grad_only_models_per_s']:,.0f} models/s"
            f"   -> claim/grad time ratio {tp['claim_time_over_grad_time']:.2f}",
        ]
    if "scaling" in names:
        rows = bench.scaling(quick=quick, trials=1024 if quick else 2048)
        results["scaling"] = rows
        lines += ["", "Sweep scaling (thm1.gradient, one size varied from T=16 K=8 d_e=32, chunk 1024)",
                  f"  {'vary':>6} {'value':>6} {'models/s':>10} {'block MiB':>10} {'chunk MiB':>10}"]
        lines += [f"  {r['vary']:>6} {r['value']:>6} {r['models_per_s']:>10,.0f} {r['block_bytes'] / 2**20:>10.2f}"
                  f" {r['chunk_bytes_est'] / 2**20:>10.1f}" for r in rows]
    if "devices" in names:
        rows = bench.device_scaling(trials=2048 if quick else 4096)
        results["devices"] = rows
        lines += ["", "Device scaling (forced host devices share the same 2 cores)",
                  *[f"  {r['devices']} device(s): {r['models_per_s']:,.0f} models/s" for r in rows]]
    if "compile" in names:
        from attnverify.verification.bench.compile_time import compile_split

        split = compile_split(trials=128 if quick else 512)
        results["compile"] = split
        lines += ["", f"Compile vs run, {split['group']} claims ({split['spec']}, {split['trials']} draws, "
                  f"{split['dtype']}, persistent cache off, seconds)",
                  f"  {'claim':<28} {'one program for the group':>27} {'one program per claim':>23}",
                  f"  {'':<28} {'compile':>13} {'run':>13} {'compile':>11} {'run':>11}"]
        lines += [f"  {r['claim']:<28} {r['shared_compile_s']:>13.2f} {r['shared_run_s']:>13.2f}"
                  f" {r['separate_compile_s']:>11.2f} {r['separate_run_s']:>11.2f}" for r in split["claims"]]
        t = split["total"]
        lines.append(f"  {'group total':<28} {t['shared_compile_s']:>13.2f} {t['shared_run_s']:>13.2f}"
                     f" {t['separate_compile_s']:>11.2f} {t['separate_run_s']:>11.2f}")
    if "cache" in names:
        from attnverify.verification.bench.compile_time import first_verdicts

        rows = first_verdicts(quick=quick)
        results["cache"] = rows
        lines += ["", "Persistent compilation cache: fresh processes, cold (empty cache) then warm (same cache)"]
        for r in rows:
            if "error" in r:
                lines.append(f"  {r['command']}: failed ({r['error']})")
                continue
            lines.append(f"  {r['command']}: cold {r['cold_s']:.1f} s, warm {r['warm_s']:.1f} s "
                         f"(warm/cold {r['warm_over_cold']:.0%}; {r['entries']} entries, "
                         f"{r['cache_bytes'] / 2**20:.1f} MiB)")
    if "lime" in names:
        results["lime"] = _lime(quick)
        lines += ["", "LIME", *_lime_lines(results["lime"])]
    return results, "\n".join(lines)


def _versus_lines(versus: dict) -> list[str]:
    if "skipped" in versus:
        return [f"  versus lime: skipped ({versus['skipped']})"]
    lines = ["  versus the lime package (one explanation, same model and text, n=5000, T=256, K=6; "
             "targets: >= 1000x at d=100, >= 300x at d~200)"]
    for mode, r in versus.items():
        setting = ", ".join(f"{k}={v!r}" for k, v in r["lime"].items())
        lines.append(f"    {mode:<7} ({setting}; d={r['d']}): lime {r['lime_seconds']:.2f} s | ours float64 "
                     f"{r['ours_seconds'] * 1e3:.1f} ms ({r['speedup']:,.0f}x) | float32 "
                     f"{r['ours_float32_seconds'] * 1e3:.1f} ms ({r['speedup_float32']:,.0f}x, max coefficient "
                     f"difference {r['float32_max_relative_difference']:.1e} of the largest)")
    return lines


def _lime_lines(lime: dict) -> list[str]:
    lines = _versus_lines(lime.get("versus_lime", {}))
    lines += [f"  {k}: {v}" for k, v in lime.items() if k not in ("scaling", "versus_lime")]
    rows = lime.get("scaling") or []
    if rows:
        lines += ["  scaling (one explanation, structured path, deletion; one size varied from n=5000 d=100 "
                  "T=256 K=6)",
                  f"  {'vary':>6} {'value':>6} {'seconds':>9} {'samples/s':>11} {'chunk MiB':>10}"]
        lines += [f"  {r['vary']:>6} {r['value']:>6} {r['seconds']:>9.4f} {r['samples_per_s']:>11,.0f}"
                  f" {r['chunk_bytes'] / 2**20:>10.1f}" for r in rows]
    return lines
