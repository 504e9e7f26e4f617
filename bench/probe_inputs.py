"""Bad-input probe: every value flag of every command, given values it must refuse or handle.

Each case runs `attnverify` as a subprocess (as a user runs it) with one flag of a small,
valid base invocation replaced by a bad value: not a number, NaN, inf, negative, zero,
beyond the float range, a fraction for an integer, an unknown choice, and for paths an empty
path, a folder where a file is meant, a file where a folder is meant, a missing file and a
path under /proc. A case is *clean* when the command either

* refuses it: exit code 2, exactly one stderr line ``attnverify[ command]: error: ...``, no traceback,
  and the output path it was given does not exist afterwards; or
* accepts it (the value was valid after all): exit code 0 or 1 and no traceback.

Anything else (a traceback, another exit code, several error lines, a partial file, running
past `TIMEOUT_S` on tiny sizes) is *unclean* and listed. Usage:

    python bench/probe_inputs.py [--jobs 2] [--json probe.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from attnverify.cli import build_parser

TIMEOUT_S = 120
TINY = ["--max-len", "6", "--d-embed", "4", "--d-att", "2", "--d-out", "2", "--heads", "2", "--vocab-size", "40"]
TEXT = "attention based explanations are popular"
SPEC_FLAGS = {"--sizes", "--max-len", "--d-embed", "--d-att", "--d-out", "--heads", "--classes", "--vocab-size",
              "--explained-class", "--head-aggregation", "--query", "--value-nonlinearity", "--output-link",
              "--scorer"}
#: Commands whose every spec flag is probed (the others share the same parsing and checks).
SPEC_PROBED = ("verify", "init-model")
NUMBERS = ["abc", "nan", "inf", "-1", "0", "1e400"]
PATH_FLAGS = {"--out", "--json", "--csv", "--model", "--vocab", "--plugin", "--claims-module", "--data"}
SKIP = {"--help", "--text"}  # --text takes any string


def bases(work: Path, model: Path) -> dict[str, list[str]]:
    """A small valid invocation of each command (fresh output paths under `work`)."""
    return {
        "derive": ["derive", "gradient", *TINY],
        "verify": ["verify", "thm1.gradient", "--trials", "4", "--quiet", *TINY],
        "claims": ["claims"],
        "related": ["related", "adversarial", "--model", str(model), "--text", TEXT],
        "spec": ["spec", *TINY],
        "init-model": ["init-model", "--out", str(work / "init.npz"), *TINY],
        "explain": ["explain", "--model", str(model), "--text", TEXT, "--lime-samples", "50"],
        "sweep-eq19": ["sweep-eq19", "--quiet", "--d", "3"],
        "train": ["train", "--data", "synthetic:64", "--out", str(work / "trained.npz"), "--epochs", "1",
                  "--quiet", *TINY],
        "figures": ["figures", "fig5", "--model", str(model), "--out", str(work / "figs")],
        "cache": ["cache", "info"],
    }


def value_flags(command: str) -> list[argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return [a for a in sub._actions if a.option_strings and a.nargs != 0 and a.option_strings[-1] not in SKIP]


def bad_values(flag: str, action: argparse.Action, work: Path, label: str) -> list[str]:
    if flag in PATH_FLAGS:
        folder, file = work / "a-folder", work / "a-file"
        # a path under a missing folder, its own for each case (cases run side by side)
        return ["", str(folder), str(file / "x"), str(work / f"missing-{label}" / "x"), "/proc/x"]
    if action.choices:
        return ["bogus"]
    return [*NUMBERS, "2.5"] if action.type is int else NUMBERS


def replaced(base: list[str], flag: str, value: str) -> list[str]:
    argv = list(base)
    if flag in argv:
        i = argv.index(flag)
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            argv[i + 1] = value
            return argv
    return [*argv, flag, value]


def cases(work: Path, model: Path) -> list[tuple[str, list[str], str | None]]:
    """(label, argv, output path that must not be left by a refusal)."""
    out = []
    for command, base in bases(work, model).items():
        for action in value_flags(command):
            flag = action.option_strings[-1]
            if flag in SPEC_FLAGS and command not in SPEC_PROBED:
                continue
            for value in bad_values(flag, action, work, f"{command}{flag}"):
                argv = replaced(base, flag, value)
                fresh = value if flag in {"--out", "--json", "--csv"} and "/missing-" in value else None
                out.append((f"{command} {flag} {value!r}", argv, fresh))
    return out


def run_case(exe: str, argv: list[str], fresh: str | None, env: dict) -> tuple[bool, str]:
    started = time.time()
    try:
        proc = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return False, f"still running after {TIMEOUT_S} s"
    err = proc.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        return False, f"traceback (exit {proc.returncode}): {lines[-1] if lines else ''}"
    if proc.returncode == 2:
        # ours ("attnverify: error: ...") or argparse's ("attnverify verify: error: argument ...")
        errors = [line for line in lines if line.startswith("attnverify") and ": error: " in line]
        if len(errors) != 1 or len([ln for ln in lines if not ln.startswith(("attnverify: warning", "WARNING"))]) != 1:
            return False, f"exit 2 with {len(lines)} stderr lines: {lines[:3]}"
        if fresh and Path(fresh).exists():
            return False, f"refused but left {fresh}"
        return True, errors[0]
    if proc.returncode in (0, 1):
        return True, f"accepted (exit {proc.returncode}, {time.time() - started:.0f} s)"
    return False, f"exit {proc.returncode}: {lines[-1] if lines else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", default="", help="run the cases whose label contains this text")
    args = parser.parse_args(argv)
    exe = shutil.which("attnverify") or str(Path(sys.executable).with_name("attnverify"))
    with tempfile.TemporaryDirectory(prefix="attnverify-probe-") as tmp:
        work = Path(tmp)
        (work / "a-folder").mkdir()
        (work / "a-file").write_text("x")
        env = {**os.environ, "ATTNVERIFY_CACHE_DIR": str(work / "xla")}
        model = work / "model.npz"
        subprocess.run([exe, "init-model", "--out", str(model), *TINY], check=True, capture_output=True, env=env)
        todo = [case for case in cases(work, model) if args.only in case[0]]
        print(f"{len(todo)} cases, {args.jobs} at a time", file=sys.stderr)
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(lambda case: run_case(exe, case[1], case[2], env), todo))
    unclean = [(label, why) for (label, _, _), (ok, why) in zip(todo, outcomes, strict=True) if not ok]
    print(f"handled cleanly: {len(todo) - len(unclean)} of {len(todo)}")
    for label, why in unclean:
        print(f"  UNCLEAN {label}: {why}")
    if args.json:
        args.json.write_text(json.dumps({"cases": len(todo), "clean": len(todo) - len(unclean),
                                         "unclean": [{"case": c, "why": w} for c, w in unclean]}, indent=1))
    return 0 if not unclean else 1


if __name__ == "__main__":
    raise SystemExit(main())
