"""Append-only sweep results with a manifest, so that an interrupted sweep can resume.

A results folder holds ``manifest.json`` (spec, seed, dtype, scale, trials, chunk size,
library versions, device count) and ``results.jsonl``: one JSON record per finished chunk
(``claim``, ``seed``, ``chunk``, ``start``, ``stop``, ``errors``), written and fsync'ed as
soon as the chunk is done. A killed run therefore loses at most the chunk in flight; a
torn last line (killed mid-write) is ignored on resume.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import jax
from attnverify.numerics.modelfile import atomic_write

from attnverify.errors import InputError

#: Manifest entries that must match for `--resume` to continue a sweep.
RESUME_KEYS = ("spec", "seed", "dtype", "scale", "trials", "chunk_size", "block")


def environment() -> dict:
    """Versions, platform and devices: recorded with every result."""
    versions = {}
    for name in ("attnverify", "jax", "jaxlib", "sympy", "numpy", "optax"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
    }


@dataclass
class ChunkStore:
    """The results folder of one sweep (see the module docstring)."""

    folder: Path
    manifest: dict
    done: dict[tuple[str, int], list[float]] = field(default_factory=dict)

    @classmethod
    def open(cls, folder: str | os.PathLike, manifest: dict, *, resume: bool) -> ChunkStore:
        folder = Path(folder)
        results = folder / "results.jsonl"
        if folder.exists() and not folder.is_dir():
            raise InputError(f"{folder}: exists and is not a folder")
        if resume:
            if not (folder / "manifest.json").is_file():
                raise InputError(f"{folder}: nothing to resume (no manifest.json)")
            try:
                previous = json.loads((folder / "manifest.json").read_text())
            except json.JSONDecodeError:
                raise InputError(f"{folder}/manifest.json is not valid JSON") from None
            changed = [k for k in RESUME_KEYS if previous.get(k) != manifest.get(k)]
            if changed:
                raise InputError(f"cannot resume {folder}: {', '.join(changed)} differ from the first run")
            store = cls(folder, previous)
            store._read(results)
            return store
        if results.exists() and results.stat().st_size > 0:
            raise InputError(f"{folder} already holds results: pass --resume, or choose another --out")
        folder.mkdir(parents=True, exist_ok=True)
        manifest = {**manifest, "environment": environment()}
        atomic_write(folder / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
        results.touch()
        return cls(folder, manifest)

    def _read(self, results: Path) -> None:
        if not results.exists():
            return
        good = 0
        with open(results, "rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line: the chunk in flight when the run was killed
                good += len(line)
                self.done[(record["claim"], record["chunk"])] = record["errors"]
        with open(results, "r+b") as handle:  # drop the torn tail so appends stay valid JSONL
            handle.truncate(good)

    def get(self, claim: str, chunk: int) -> list[float] | None:
        return self.done.get((claim, chunk))

    def append(self, claim: str, chunk: int, start: int, stop: int, errors: list[float]) -> None:
        record = {"claim": claim, "seed": self.manifest["seed"], "chunk": chunk,
                  "start": start, "stop": stop, "errors": errors}
        with open(self.folder / "results.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done[(claim, chunk)] = errors
