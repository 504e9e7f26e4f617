"""Results of the package's own numerics kept on disk between runs, next to the compiled programs:
trained synthetic models, study pools, the numbers a claim reports beside its verdict.

A warm run reads its sweep programs back (`numerics.stored_programs`), so it no longer trains the
claims' synthetic models (`training.synthetic_tasks`, the Wiegreffe & Pinter studies, the scorer
study) while tracing them. But a claim's context, a figure or a study's pool still needs them, and
computed them again: seconds each, most of a warm report after the sweeps. A function decorated
with `on_disk` keeps its result (parameters, accuracies, per-document metrics, reported numbers)
in the folder the command line chose, through `theory.memo`'s store.

**Results do not change.** An entry holds the arrays and numbers the function returned, read back
bit for bit. Its key is the function, its arguments (plain ones only: a spec, numbers, strings,
tuples of them; anything else, a plugin's spec, is computed afresh), and
`stored_programs.environment_digest`: every file of the package, the versions of Python, JAX,
jaxlib, NumPy, SymPy and optax, the JAX flags that change a trace, the options given to XLA
(``$XLA_FLAGS``), and the machine (another CPU or another XLA option may round a training step
differently). Without a folder (tests, notebooks) nothing is stored; an entry that cannot be read
is computed again and rewritten. Like the compiled programs beside it, the folder is trusted: only
its owner should be able to write to it.
"""

from __future__ import annotations

from attnverify.numerics.stored_programs import environment_digest
from attnverify.theory import memo

SUFFIX = ".result.pickle"


def on_disk(function):
    """`function` (plain arguments in; arrays, numbers and tuples or dicts of them out), kept on disk."""
    return memo.on_disk(function, digest=environment_digest, suffix=SUFFIX)


def kept(name: str, call: str, compute):
    """``compute()`` kept on disk under `name`, for a caller whose inputs are not plain arguments
    (a figure's context: a model's arrays): `call` is a string naming all of them."""
    return memo.kept(name, call, compute, digest=environment_digest, suffix=SUFFIX)
