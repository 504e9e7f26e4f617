"""The model file: one ``.npz`` (a documented, stable format; docs/model-file.md).

Keys: ``embedding (V, d_e)``, ``W_q (K, d_att, d_e)``, ``W_k (K, d_att, d_e)``,
``W_v (K, d_out, d_e)``, ``W_l (K, C, d_out)``, ``vocab`` (V strings; 0 is ``[CLS]``, 1 is
``UNK``), ``spec`` (the `ModelSpec` as JSON) and, when ``spec.biases``, ``b_q``, ``b_k``,
``b_v``, ``b_l``; when ``spec.scorer`` is ``additive`` or ``deep``, ``v_score (K, d_att)``,
and for ``deep`` also ``U_score (K, d_att, d_att)``. Loading validates every header (dtype,
shape, size) against the spec before reading data, rejects NaN/inf, parameter arrays the spec
does not use, members that are not arrays, and a vocabulary with repeated or unmatchable words.
"""

from __future__ import annotations

import functools
import os
import struct
import tempfile
import threading
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from attnverify.numerics.model import Params
from attnverify.numerics.tokenize import CLS_TOKEN, UNK_TOKEN, check_vocab

from attnverify.errors import InputError
from attnverify.interrupts import signals_held
from attnverify.spec import ModelSpec
from attnverify.validate import TMP_PREFIX, fits_in_memory, os_error, pid_alive, spec_bytes, temporary_owner

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
    # A plugin model's declared arrays (``docs/plugins.md``) and the stored plugin member.
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    plugin: str | None = None


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp_path)`` then rename onto `path`: no half-written file on failure. A
    `path` that is a symbolic link is written through: its target is replaced, the link stays.

    The temporary file sits beside `path` as ``.attnverify-tmp-PID-NAME.XXXX``: removed on any
    exception (the CLI turns SIGINT and SIGTERM into one), and, after a SIGKILL, by the next
    write into the same folder (`remove_stale_temporaries`). A failed write (disk full, no
    permission) is an `InputError` naming `path`.
    """
    text = os.fspath(path)
    if not text.strip():
        raise InputError("the output path is empty")
    path = Path(text)
    if path.is_symlink():  # written through, as a shell's `>` does: the rename must not replace the link
        path = Path(os.path.realpath(path))
        if path.exists() and not path.is_file():
            raise InputError(f"{text}: links to {path}, which is not a regular file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(f"{path}: folder {folder} {what}")
    remove_stale_temporaries(folder)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TMP_PREFIX}{os.getpid()}-{path.name[:64]}.",
                                   suffix=path.suffix[:16])
    except OSError as err:
        raise os_error(path, err) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        write(tmp)
        pending = getattr(_TOGETHER, "pending", None)
        if pending is not None:  # renamed with the others at the end of `written_together`
            pending.append((tmp, path))
            return
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise os_error(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TOGETHER = threading.local()


@contextmanager
def written_together() -> Iterator[None]:
    """`atomic_write`s that belong together (a figure's image, PDF and data file): each file is
    written to its temporary as usual, and all are renamed onto their paths at the end of the
    block, with SIGINT and SIGTERM held back for the renames (`attnverify.interrupts.signals_held`).
    An error or a signal before then removes every temporary: the folder keeps all of the earlier
    files or gets all of the new ones, never a mix of two runs. A block inside another joins it."""
    if getattr(_TOGETHER, "pending", None) is not None:
        yield
        return
    pending: list[tuple[str, Path]] = []
    _TOGETHER.pending = pending
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _TOGETHER.pending = None
    with signals_held():
        for done, (tmp, path) in enumerate(pending):
            try:
                os.replace(tmp, path)
            except OSError as err:
                for left, _ in pending[done:]:
                    Path(left).unlink(missing_ok=True)
                raise os_error(path, err) from None


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of atomic writes in `folder` whose process is gone (a write
    killed by SIGKILL); a running process's are left alone. Returns the removed paths."""
    removed = []
    try:
        candidates = list(Path(folder).glob(f"{TMP_PREFIX}*"))
    except OSError:
        return removed
    for candidate in candidates:
        pid = temporary_owner(candidate.name)
        if pid is not None and not pid_alive(pid) and candidate.is_file():
            try:
                candidate.unlink()
                removed.append(candidate)
            except OSError:
                pass
    return removed


def save(path: str | os.PathLike, spec: ModelSpec, params: Params, vocab: list[str], *,
         extra: Mapping[str, np.ndarray] | None = None, plugin: str | None = None) -> None:
    """Write a model file. A plugin model adds its declared arrays (`extra`) and `plugin`,
    the plugin's description (JSON text), stored as the ``plugin`` member."""
    if len(vocab) != spec.vocab_size or vocab[:2] != [CLS_TOKEN, UNK_TOKEN]:
        raise InputError(f"vocab must have {spec.vocab_size} entries starting with {CLS_TOKEN}, {UNK_TOKEN}")
    check_vocab(vocab)
    missing = [name for name in expected_shapes(spec) if getattr(params, name) is None]
    if missing:
        raise InputError(f"the parameters lack {', '.join(missing)}, which the spec needs")
    arrays = {name: np.asarray(getattr(params, name)) for name in expected_shapes(spec)}
    clash = sorted(set(extra or {}) & {*arrays, "vocab", "spec", "plugin"})
    if clash:
        raise InputError(f"a declared array is named like a model file member: {clash[0]}")
    arrays.update({name: np.asarray(value) for name, value in (extra or {}).items()})
    for name, array in arrays.items():  # a model every other command would reject is not written
        if not np.all(np.isfinite(array)):
            raise InputError(f"the parameters are not finite: {name} contains NaN or inf")
    members = {"plugin": np.asarray(plugin)} if plugin is not None else {}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, vocab=np.asarray(vocab, dtype=str), spec=np.asarray(spec.to_json()), **members,
                     **arrays)

    atomic_write(path, write)


#: Bounds on the text members: the spec's JSON, and one vocabulary word (in characters).
MAX_SPEC_CHARS = 1 << 16
MAX_WORD_CHARS = 1 << 10
#: Errors a damaged archive or .npy member can raise while being read (zip, zlib, numpy's
#: header parser); each becomes one `InputError` line. The fuzz test holds this list complete.
READ_ERRORS = (OSError, ValueError, EOFError, KeyError, SyntaxError, zipfile.BadZipFile, zlib.error,
               NotImplementedError, RuntimeError, struct.error, OverflowError, TypeError,
               tokenize.TokenError)  # NumPy's parser of a member's .npy header raises the last


def load(path: str | os.PathLike, *, dtype=np.float64,
         extras: Callable[[ModelSpec], dict[str, tuple[int, ...]]] | None = None) -> ModelFile:
    """Read and validate a model file; every problem is a one-line `InputError`.

    Every member must be a ``.npy`` array the spec uses; each header's dtype and shape are
    checked against the spec, and the memory they need against what is free, before any data is
    read (a header claiming a huge shape costs nothing). Arrays must be finite; the vocabulary
    must start with [CLS], UNK and hold distinct words a document can contain (`check_vocab`).
    A plugin model file (a ``plugin`` member) loads only with `extras`: the shapes of the
    plugin's declared arrays under the stored spec, read into `ModelFile.extra`.
    """
    if not os.fspath(path).strip():
        raise InputError("the model path is empty")
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a model file")
    if not path.is_file():  # a pipe or a device would block the read, or never end
        raise InputError(f"{path}: {'is not a regular file' if path.exists() else 'no such model file'}")
    try:
        with zipfile.ZipFile(path) as archive:
            return _load(archive, path, dtype, extras)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path}: too large to load into memory") from None
    except READ_ERRORS as err:
        raise InputError(f"{path}: not a readable .npz model file ({type(err).__name__})") from None


def _load(archive: zipfile.ZipFile, path: Path, dtype, extras=None) -> ModelFile:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise InputError(f"{path}: member {info.filename!r} is not a .npy array")
        name = info.filename[: -len(".npy")]
        if name in members:
            raise InputError(f"{path}: array {name!r} is stored twice")
        members[name] = info
    known = ("spec", "vocab", *ARRAYS, *BIASES, *SCORER)
    if "plugin" in members and extras is None:
        raise InputError(f"{path}: a plugin model's file: `explain --plugin FILE` reads it, given the plugin file "
                         "that wrote it (related, figures and report read the paper's model only)")
    for name in members:
        if name not in known and extras is None:
            raise InputError(f"{path}: unknown array {name!r} (a model file holds {', '.join(known)})")
    for key in ("spec", "vocab", *ARRAYS):
        if key not in members:
            raise InputError(f"{path}: missing array {key!r}")
    spec_text = _read(archive, members["spec"], path, "spec", (), "U", MAX_SPEC_CHARS)
    try:
        spec = ModelSpec.from_json(str(spec_text[()]))
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    declared = extras(spec) if extras is not None else {}
    plugin = str(_read(archive, members["plugin"], path, "plugin", (), "U", MAX_SPEC_CHARS)[()]) \
        if "plugin" in members else None
    for name in members:
        if name not in (*known, "plugin", *declared):
            raise InputError(f"{path}: array {name!r} is neither the model's nor one the plugin declares")
    missing = [name for name in declared if name not in members]
    if missing:
        raise InputError(f"{path}: missing array {missing[0]!r}, which the plugin declares")
    shapes = expected_shapes(spec)
    unused = [name for name in (*BIASES, *SCORER) if name in members and name not in shapes]
    if unused:  # e.g. an additive model's v_score under a spec that says scorer="dot"
        raise InputError(f"{path}: array {unused[0]!r} is not used by the stored spec "
                         f"(biases={spec.biases}, scorer={spec.scorer!r})")
    for name in shapes:
        if name not in members:
            raise InputError(f"{path}: missing array {name!r}")
    # the parameters, and one document's activations (a max_len of 10**30 would pass the first)
    fits_in_memory(f"{path}: the model", max(sum(8 * int(np.prod(shape)) for shape in shapes.values()),
                                             spec_bytes(spec)))
    vocab_array = _read(archive, members["vocab"], path, "vocab", (spec.vocab_size,), "U", MAX_WORD_CHARS)
    arrays = {}
    for name, shape in shapes.items():
        array = _read(archive, members[name], path, name, shape, "f", None)
        if not np.all(np.isfinite(array)):
            raise InputError(f"{path}: {name} contains NaN or inf")
        arrays[name] = np.asarray(array, dtype=dtype)
    extra = {}
    for name, shape in declared.items():
        array = _read(archive, members[name], path, name, shape, "f", None)
        if not np.all(np.isfinite(array)):
            raise InputError(f"{path}: {name} contains NaN or inf")
        extra[name] = np.asarray(array, dtype=dtype)
    vocab = [str(w) for w in vocab_array.tolist()]
    if vocab[:2] != [CLS_TOKEN, UNK_TOKEN]:
        raise InputError(f"{path}: vocab must start with {CLS_TOKEN!r}, {UNK_TOKEN!r}")
    try:
        check_vocab(vocab)
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    return ModelFile(spec, Params(**arrays), vocab, extra, plugin)


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, name: str, shape: tuple[int, ...],
          kind: str, max_chars: int | None) -> np.ndarray:
    """One ``.npy`` member, its header checked (dtype kind, shape, size) before its data is read."""
    with archive.open(info) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            got, fortran, dt = np.lib.format.read_array_header_1_0(handle)
        elif version in ((2, 0), (3, 0)):
            got, fortran, dt = np.lib.format.read_array_header_2_0(handle)
        else:
            raise InputError(f"{path}: {name} has an unknown .npy version {version}")
        if dt.hasobject or dt.kind != kind or dt.itemsize == 0:
            what = "a float array" if kind == "f" else "text"
            raise InputError(f"{path}: {name} is not {what} (dtype {dt.str})")
        if kind == "U" and dt.itemsize // 4 > max_chars:
            raise InputError(f"{path}: {name} holds strings of {dt.itemsize // 4} characters (at most {max_chars})")
        if got != shape:
            if name == "vocab" and len(got) == 1:
                raise InputError(f"{path}: vocab has {got[0]} entries, the spec says {shape[0]}")
            raise InputError(f"{path}: {name} has shape {got}, the spec requires {shape}")
        size = int(np.prod(shape)) * dt.itemsize
        data = handle.read(size)
    if len(data) != size:
        raise InputError(f"{path}: {name} is truncated ({len(data)} of {size} bytes)")
    array = np.frombuffer(data, dtype=dt).reshape(shape, order="F" if fortran else "C")
    return array.copy()


#: What `check_float_range` checks, in the order it reports them.
RANGE_QUANTITIES = ("the logits", "the attention", "the explained output", "the gradient of the explained output")


@functools.partial(jax.jit, static_argnames=("spec",))
def range_quantities(params: Params, tokens, spec: ModelSpec) -> tuple:
    """`RANGE_QUANTITIES` on `tokens`, one compiled program (the persistent cache keeps it; computed
    operation by operation, the check compiled about 60 small programs in every command)."""
    if getattr(spec, "plugin", None) is not None:  # a plugin's true model: its compiled forward
        from attnverify.numerics import plugin_model as true_model
    else:
        from attnverify.numerics import model as true_model
    e = true_model.embed(params, tokens, spec)
    return (true_model.logits(params, e, spec), true_model.attention(params, e, spec),
            true_model.explained_output(params, e, spec), true_model.output_gradient(params, e, spec))


@functools.partial(jax.jit, static_argnames=("spec",))
def _score_magnitude(params: Params, tokens, spec: ModelSpec) -> jnp.ndarray:
    from attnverify.numerics import model as true_model

    return jnp.max(jnp.abs(true_model.scores(params, true_model.embed(params, tokens, spec), spec)))


def score_magnitude(params: Params, tokens, spec: ModelSpec) -> float:
    """max |gamma_t^(i)| over heads and positions on `tokens`: the attention scores' size, which
    sets the rounding of the attention (`attnverify.preflight.warn_rounding_floor`)."""
    return float(_score_magnitude(params, jnp.asarray(tokens), spec))


def check_float_range(params: Params, spec: ModelSpec, tokens, what: str, *, headroom: bool = False,
                      footroom: bool = False) -> None:
    """Refuse a model whose basic quantities overflow on `tokens`: the logits, the attention,
    the explained output and its gradient must be finite (a model with weights near the float
    range gives NaN explanations otherwise, or a 0 where the truth is undefined). With
    `headroom`, each must also stay below the square root of the largest float: a claim
    multiplies such quantities, and a product of two must not overflow either. With `footroom`,
    the gradient must reach the square root of the smallest normal float: below it a product
    of two underflows, and an identity between two sides that are both 0 would hold vacuously."""
    values = range_quantities(params, jnp.asarray(tokens), spec)
    if footroom:
        gradient = np.asarray(values[-1])
        floor = float(np.sqrt(np.finfo(gradient.dtype).tiny))
        largest = float(np.abs(gradient).max(initial=0.0))
        if np.all(np.isfinite(gradient)) and largest < floor:
            raise InputError(f"{what}: the gradient of the explained output is at most {largest:.3g}, below "
                             f"{floor:.3g}: products of such numbers underflow to 0, where every identity would "
                             f"hold vacuously (hyp. unmet: outside float range)")
    for quantity, value in zip(RANGE_QUANTITIES, values, strict=True):
        value = np.asarray(value)
        if not np.all(np.isfinite(value)):
            bad = "NaN" if np.isnan(value).any() else "inf"
            verb = "are" if quantity.endswith("s") else "is"
            if bad == "NaN" and getattr(spec, "plugin", None) is not None:  # a domain error as likely as overflow
                raise InputError(f"{what}: {quantity} {verb} NaN: the plugin's model is undefined there (a log or "
                                 "square root of a negative number, 0/0) or leaves the float range")
            raise InputError(f"{what}: {quantity} {verb} {bad}, outside "
                             f"the {value.dtype} range (hyp. unmet: outside float range)")
        limit = float(np.sqrt(np.finfo(value.dtype).max))
        if headroom and np.abs(value).max(initial=0.0) > limit:
            raise InputError(f"{what}: {quantity} reach{'' if quantity.endswith('s') else 'es'} "
                             f"{float(np.abs(value).max()):.3g}, above {limit:.3g}: a product of two would leave "
                             f"the {value.dtype} range (hyp. unmet: outside float range)")
