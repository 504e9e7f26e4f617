"""The model file: one ``.npz`` (a documented, stable format; README "Model file").

Keys: ``embedding (V, d_e)``, ``W_q (K, d_att, d_e)``, ``W_k (K, d_att, d_e)``,
``W_v (K, d_out, d_e)``, ``W_l (K, C, d_out)``, ``vocab`` (V strings; 0 is ``[CLS]``, 1 is
``UNK``), ``spec`` (the `ModelSpec` as JSON) and, when ``spec.biases``, ``b_q``, ``b_k``,
``b_v``, ``b_l``; when ``spec.scorer`` is ``additive`` or ``deep``, ``v_score (K, d_att)``,
and for ``deep`` also ``U_score (K, d_att, d_att)``. Loading validates every shape against
the spec, rejects NaN/inf and rejects parameter arrays the spec does not use.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from attnverify.numerics.model import Params
from attnverify.numerics.tokenize import CLS_TOKEN, UNK_TOKEN

from attnverify.errors import InputError
from attnverify.spec import ModelSpec

ARRAYS = ("embedding", "W_q", "W_k", "W_v", "W_l")
BIASES = ("b_q", "b_k", "b_v", "b_l")
SCORER = ("v_score", "U_score")


def expected_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The arrays a model file of `spec` holds, and their shapes (optional ones only when needed)."""
    K, A, O, D, C, V = spec.heads, spec.d_att, spec.d_out, spec.d_embed, spec.classes, spec.vocab_size
    shapes = {
        "embedding": (V, D), "W_q": (K, A, D), "W_k": (K, A, D), "W_v": (K, O, D), "W_l": (K, C, O),
    }
    if spec.biases:
        shapes.update(b_q=(K, A), b_k=(K, A), b_v=(K, O), b_l=(K, C))
    if spec.scorer != "dot":
        shapes["v_score"] = (K, A)
    if spec.scorer == "deep":
        shapes["U_score"] = (K, A, A)
    return shapes


@dataclass(frozen=True)
class ModelFile:
    spec: ModelSpec
    params: Params
    vocab: list[str]


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename onto `path`: no half-written file on failure."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(path: str | os.PathLike, spec: ModelSpec, params: Params, vocab: list[str]) -> None:
    if len(vocab) != spec.vocab_size or vocab[:2] != [CLS_TOKEN, UNK_TOKEN]:
        raise InputError(f"vocab must have {spec.vocab_size} entries starting with {CLS_TOKEN}, {UNK_TOKEN}")
    missing = [name for name in expected_shapes(spec) if getattr(params, name) is None]
    if missing:
        raise InputError(f"the parameters lack {', '.join(missing)}, which the spec needs")
    arrays = {name: np.asarray(getattr(params, name)) for name in expected_shapes(spec)}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, vocab=np.asarray(vocab, dtype=str), spec=np.asarray(spec.to_json()), **arrays)

    atomic_write(path, write)


def load(path: str | os.PathLike, *, dtype=np.float64) -> ModelFile:
    """Read and validate a model file; every problem is a one-line `InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as data:
            content = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"{path}: not a readable .npz model file ({type(err).__name__})") from None
    for key in ("spec", "vocab", *ARRAYS):
        if key not in content:
            raise InputError(f"{path}: missing array {key!r}")
    spec = ModelSpec.from_json(str(content["spec"]))
    unused = [name for name in (*BIASES, *SCORER) if name in content and name not in expected_shapes(spec)]
    if unused:  # e.g. an additive model's v_score under a spec that says scorer="dot"
        raise InputError(f"{path}: array {unused[0]!r} is not used by the stored spec "
                         f"(biases={spec.biases}, scorer={spec.scorer!r})")
    for name, shape in expected_shapes(spec).items():
        if name not in content:
            raise InputError(f"{path}: missing array {name!r}")
        got = content[name].shape
        if got != shape:
            raise InputError(f"{path}: {name} has shape {got}, the spec requires {shape}")
        if not np.issubdtype(content[name].dtype, np.floating):
            raise InputError(f"{path}: {name} is not a float array")
        if not np.all(np.isfinite(content[name])):
            raise InputError(f"{path}: {name} contains NaN or inf")
    vocab = [str(w) for w in content["vocab"].tolist()]
    if len(vocab) != spec.vocab_size:
        raise InputError(f"{path}: vocab has {len(vocab)} entries, the spec says {spec.vocab_size}")
    if vocab[:2] != [CLS_TOKEN, UNK_TOKEN]:
        raise InputError(f"{path}: vocab must start with {CLS_TOKEN!r}, {UNK_TOKEN!r}")
    arrays = {name: np.asarray(content[name], dtype=dtype) for name in expected_shapes(spec)}
    return ModelFile(spec, Params(**arrays), vocab)
