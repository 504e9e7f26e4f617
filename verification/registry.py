"""The claims registry: every checked statement is a `Claim`, i.e. data.

A claim names two computations of the same quantity (``lhs`` and ``rhs``) that the sweep
compares on random parameter draws, the spec hypotheses under which the statement is
asserted, a tolerance per dtype and why, whether the statement is expected to hold and where
that expectation comes from (`provenance`).
Adding a claim is one `register(Claim(...))` call in a module of `verification.claims`.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
import numpy as np
from attnverify.numerics.jax_options import x64_turned_off
from attnverify.numerics.model import Params
from attnverify.verification.confidence import takes_tolerance

from attnverify.errors import InputError, UserCodeError, describe
from attnverify.spec import ModelSpec, check_requires
from attnverify.validate import flag, number

#: ``(params, tokens) -> (lhs, rhs)``: both sides on one draw, any matching shapes.
Comparison = Callable[[Params, jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]

#: Where a claim's expectation comes from: the statement as published, a cited paper's
#: statement, or established here (post hoc).
PROVENANCES = ("paper", "literature", "measured")
#: `Claim.embedding_rows`: the rows of the embedding table a comparison reads.
EMBEDDING_ROWS = ("table", "document")

#: The switches of the paper's model that Theorem 1-type statements rely on.
PAPER_HYPOTHESES: dict[str, Any] = {
    "scale_scores": True,
    "head_aggregation": "mean",
    "query": "cls",
    "value_nonlinearity": "none",
    "output_link": "logit",
    "scorer": "dot",  # the closed forms differentiate <q, k_t>: kappa = W_k^T q / sqrt(d_att)
}


@dataclass(frozen=True)
class Claim:
    id: str
    group: str
    statement: str
    source: str
    lhs: str  # what the left-hand side is computed by
    rhs: str  # what the right-hand side is computed by
    build: Callable[[ModelSpec], Comparison]
    tolerance: Mapping[str, float]
    tolerance_reason: str
    requires: Mapping[str, Any] = field(default_factory=dict)
    holds: bool = True  # False: known not to hold; its FAIL is a finding, not a bug
    finding: str | None = None  # reported when it fails; may use {max_error:.3g} or its statistics
    proof: Callable[[ModelSpec], str] | None = None  # status of the symbolic proof under a spec
    # Empirical claims (optional): `measure` turns one draw's (lhs, rhs) into the number kept
    # per draw (default: the relative error); `summary` turns the numbers of all draws into
    # named statistics whose "error" entry is judged against the tolerance (PASS iff <=).
    measure: Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray] | None = None
    summary: Callable[[np.ndarray], dict[str, float]] | None = None
    # Optional numbers measured once per spec and reported with the result (e.g. trained
    # models' accuracies), merged into its statistics; they do not enter the verdict.
    context: Callable[[ModelSpec], dict[str, float]] | None = None
    # Claims that evaluate the same quantities on the same draws name one evaluation (e.g.
    # "theorem1"): a sweep compiles one program that returns every member's per-draw measure
    # and keeps the others' for their own sweeps (`verification.blocks`). Results do not change.
    evaluation: str | None = None
    # Which rows of the embedding table the claim's comparison reads: "table" (any), or
    # "document" (only the rows of the draw's tokens, [CLS] included). A sweep of claims that all
    # read only the document draws only those rows, bit for bit as in the whole table, and makes
    # the others NaN, so a claim that reads another row gets NaN, never a number
    # (`numerics.draws.draw_params`). Results do not change; the draws cost less.
    embedding_rows: str = "table"
    # Why NaN / inf draws are legitimate for this claim (e.g. "a draw without a near-tie pair has
    # no agreement share"): they are then counted and left out. Without a reason any such draw
    # makes the claim FAIL: a draw that could not be computed is no evidence either way.
    nonfinite_reason: str | None = None
    # The synthetic tasks (`numerics.training.synthetic_tasks.TASKS`) whose trained models the
    # claim's build reads. A spec those tasks cannot be built at is refused when the claims are
    # chosen (`refuse_untrainable`), before any claim runs, not when this one's turn comes.
    trains_on: tuple[str, ...] = ()
    # Where the expectation `holds` comes from (required): "paper" (the statement as published),
    # "literature" (a cited paper's statement) or "measured" (established here, post hoc: derived
    # or measured in this project). See `verification.verdicts`.
    provenance: str = field(kw_only=True)
    # With a measured expectation that the statement fails: who asserts it holds ("paper" or
    # "literature"). Its failure is then reported as refuting that source, never as "expected".
    asserted_by: str | None = None

    def __post_init__(self) -> None:
        if self.embedding_rows not in EMBEDDING_ROWS:
            raise ValueError(f"claim {self.id}: embedding_rows must be one of {', '.join(EMBEDDING_ROWS)}, "
                             f"got {self.embedding_rows!r}")
        if not isinstance(self.trains_on, tuple) or not all(isinstance(task, str) for task in self.trains_on):
            raise ValueError(f"claim {self.id}: trains_on is a tuple of task names (e.g. ('needle',)), got "
                             f"{self.trains_on!r}")
        if self.provenance not in PROVENANCES:
            raise ValueError(f"claim {self.id}: provenance must be one of {', '.join(PROVENANCES)}, "
                             f"got {self.provenance!r}")
        if self.asserted_by is not None and (self.asserted_by not in PROVENANCES[:2] or self.provenance != "measured"
                                             or self.holds):
            raise ValueError(f"claim {self.id}: asserted_by ('paper' or 'literature') goes with a measured "
                             "expectation that the statement fails")

    def expected(self, spec: ModelSpec) -> bool | None:
        """Expected PASS/FAIL under `spec`; None when its hypotheses do not hold."""
        return self.holds if spec.satisfies(dict(self.requires)) else None

    def unmet(self, spec: ModelSpec) -> dict[str, Any]:
        decided = getattr(spec, "unmet", None)  # a plugin spec decides by proof (theory.plugin)
        if decided is not None:
            return decided(dict(self.requires))
        return {k: getattr(spec, k) for k, v in self.requires.items() if getattr(spec, k) != v}


REGISTRY: dict[str, Claim] = {}
#: Ids of the built-in claims (registered by the modules of `verification.claims`).
BUILTIN: set[str] = set()
_BUILTIN_PACKAGE = "attnverify.verification.claims"


def register(claim: Claim) -> Claim:
    """Add `claim` to the registry.

    A built-in claim (registered from `verification.claims`) is registered once. A user's
    claim (a plugin file, a claims module, a notebook) registered again under the same id
    replaces the earlier one, so a re-run notebook cell works; a user's claim whose id is a
    built-in one's, or whose fields cannot work (`check_user_claim`), is an `InputError`.
    """
    if not isinstance(claim, Claim):
        raise InputError(f"register takes a Claim, got {type(claim).__name__}")
    caller = sys._getframe(1).f_globals.get("__name__", "")
    builtin = caller == _BUILTIN_PACKAGE or caller.startswith(_BUILTIN_PACKAGE + ".")
    if not builtin and _BUILTIN_PACKAGE not in sys.modules:
        importlib.import_module(_BUILTIN_PACKAGE)  # built-ins first, so that a clash is seen
    if claim.id in REGISTRY and (builtin or claim.id in BUILTIN):
        if builtin:
            raise ValueError(f"claim {claim.id} registered twice")
        raise InputError(f"claim id {claim.id!r} clashes with a built-in claim (choose another id)")
    if not builtin:  # a user's claim: what can be checked now is checked now, naming the claim
        check_user_claim(claim)
        _check_user_names(claim, caller)
    missing = {"float64", "float32"} - set(claim.tolerance)
    if missing:
        raise ValueError(f"claim {claim.id} lacks a tolerance for {', '.join(sorted(missing))}")
    REGISTRY[claim.id] = claim
    _ORIGIN[claim.id] = caller
    if builtin:
        BUILTIN.add(claim.id)
    return claim


#: The module that registered each claim: a user's claim is replaced only from where it came from.
_ORIGIN: dict[str, str] = {}


def unregister(claim_id: str) -> Claim:
    """Take a user's claim (a plugin file's, a claims module's, a notebook's) out of the registry
    and return it; its id may then be registered again from anywhere. A built-in claim, or an id
    not registered, is an `InputError`."""
    if _BUILTIN_PACKAGE not in sys.modules:
        importlib.import_module(_BUILTIN_PACKAGE)  # built-ins first, so that one is named as built in
    if not isinstance(claim_id, str):
        raise InputError(f"a claim id is a string, got {type(claim_id).__name__}")
    if claim_id in BUILTIN:
        raise InputError(f"claim {claim_id} is built in: it cannot be unregistered")
    if claim_id not in REGISTRY:
        close = difflib.get_close_matches(claim_id, [c for c in REGISTRY if c not in BUILTIN], n=3)
        raise InputError(f"no user claim {claim_id!r} is registered"
                         + (f" (did you mean {', '.join(close)}?)" if close else ""))
    _ORIGIN.pop(claim_id, None)
    return REGISTRY.pop(claim_id)


def _check_user_names(claim: Claim, caller: str) -> None:
    """A user's id and group must select what they name (`select`): not empty, not ``all``, an id
    that is not another group's name and a group that is not another claim's id (either would hide
    a claim from ``verify NAME``), and an id another module registered is not taken over silently
    (a re-run notebook cell, from the same module, replaces its claim)."""
    for what, value in (("id", claim.id), ("group", claim.group)):
        if not isinstance(value, str) or not value.strip() or value == "all":
            raise InputError(f"claim {claim.id!r}: {what} {value!r} cannot be selected (an empty name or 'all')")
        if any(ch.isspace() or not ch.isprintable() for ch in value):
            # `verify NAME` takes one word, and the table shows one line per claim
            raise InputError(f"claim {claim.id!r}: {what} {value!r} holds a space or a control character "
                             "(a name is one word)")
    if not isinstance(claim.statement, str) or not claim.statement.strip():
        raise InputError(f"claim {claim.id!r}: statement {claim.statement!r} is empty (say what is claimed)")
    if not claim.statement.isprintable():  # a line break or a tab would split the table's row
        raise InputError(f"claim {claim.id!r}: statement {claim.statement!r} holds a line break or another control "
                         "character (the table shows it on one line)")
    named = groups()
    if claim.id in named and named[claim.id] != [claim.id]:
        raise InputError(f"claim id {claim.id!r} is the name of the group {claim.id!r}: "
                         "`verify` would run that group, never this claim (choose another id)")
    if claim.group in REGISTRY and claim.group != claim.id:
        raise InputError(f"claim {claim.id!r}: its group {claim.group!r} is another claim's id: "
                         f"`verify {claim.group}` would no longer run that claim (choose another group)")
    earlier = _ORIGIN.get(claim.id)
    if claim.id in REGISTRY and earlier is not None and earlier != caller:
        module = sys.modules.get(earlier)  # a plugin file's or claims module's module: its generated name
        where = getattr(module, "__file__", None) or earlier  # says nothing to the user; its file does
        raise InputError(f"claim id {claim.id!r} is already registered by {where} "
                         "(choose another id, or unregister it first; or one file was given twice, as a plugin "
                         "and as a claims module?)")


def check_user_claim(claim: Claim) -> None:
    """One-line `InputError` naming a user's claim whose fields cannot work: a `build` that is
    not callable, a tolerance per dtype that is not a finite number (or is negative, unless a
    statistical test takes its threshold from it), hypotheses (`requires`) on a name
    that is no spec field, or a `measure` / `summary` / `context` / `proof` that is neither None
    nor callable. (What its build and comparison do is checked when they run: `build_comparison`,
    `user_code`.)"""
    if not isinstance(claim, Claim):
        raise InputError(f"register() takes a Claim, got {type(claim).__name__}")
    if not callable(claim.build):
        raise InputError(f"claim {claim.id!r}: build must be a function spec -> comparison, "
                         f"got {type(claim.build).__name__}")
    if not isinstance(claim.tolerance, Mapping):
        raise InputError(f"claim {claim.id!r}: tolerance must be a dict {{dtype: number}}, "
                         f"got {type(claim.tolerance).__name__}")
    for dtype in ("float64", "float32"):
        value = claim.tolerance.get(dtype)
        if value is None:
            raise InputError(f"claim {claim.id!r}: no tolerance for {dtype}")
        # A tolerance is a distance (a negative one refutes everything, a control included);
        # only a statistical test without a threshold of its own takes its threshold from it.
        number(f"claim {claim.id!r}: the {dtype} tolerance", value,
               low=None if takes_tolerance(claim.summary) else 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float):  # not an array that passes as one
            raise InputError(f"claim {claim.id!r}: the {dtype} tolerance must be a Python number, "
                             f"got {type(value).__name__}")
    flag(f"claim {claim.id!r}: holds", claim.holds)
    try:
        check_requires(claim.requires)
    except InputError as err:
        raise InputError(f"claim {claim.id!r}: {err}") from None
    for name in ("measure", "summary", "context", "proof"):
        value = getattr(claim, name)
        if value is not None and not callable(value) and not hasattr(value, "judge"):
            raise InputError(f"claim {claim.id!r}: {name} must be None or a function, got {type(value).__name__}")


def _package_run(claim: Claim, fn: Any = None) -> bool:
    """`claim` as registered by the package, or `fn` the package's own code: not the user's."""
    return is_builtin(claim) or (fn is not None and _package_code(fn))


def _package_code(fn: Any) -> bool:
    """`fn` (a function, or an object whose class is the code) is this package's."""
    module = getattr(fn, "__module__", None) or ""
    return module == "attnverify" or module.startswith("attnverify.")


@contextmanager
def user_code(claim: Claim, what: str, fn: Any = None) -> Iterator[None]:
    """Run the body as `claim`'s own code (its `what`: "build", "comparison", ...): for a user's
    claim, an error it raises (a `SystemExit` too; `KeyboardInterrupt` stays an interrupt)
    becomes a one-line `UserCodeError` (an `InputError`) naming the claim. A built-in claim as registered, or a
    callable `fn` that is the package's own code, is not wrapped: an error there is a bug,
    and its traceback is wanted."""
    if _package_run(claim, fn):
        yield
        return
    x64 = _x64()
    try:
        yield
    except InputError as err:
        raise UserCodeError(f"claim {claim.id!r}: {what}: {err}") from None
    except (Exception, SystemExit) as err:  # noqa: BLE001 (user code: any error, or an exit, is one line)
        if x64 and not _x64():  # what failed is likely the float32 arrays that followed
            raise UserCodeError(x64_turned_off(f"claim {claim.id!r}: {what}")) from None
        raise UserCodeError(f"claim {claim.id!r}: {what} raised {describe(err)}") from None
    if x64 and not _x64():
        raise UserCodeError(x64_turned_off(f"claim {claim.id!r}: {what}"))


def _x64() -> bool:
    jax = sys.modules.get("jax")
    return jax is not None and bool(jax.config.jax_enable_x64)


def build_comparison(claim: Claim, spec: ModelSpec) -> Comparison:
    """``claim.build(spec)``; for a user's claim, a build that raises or returns no function is a
    `UserCodeError` naming the claim (`user_code`)."""
    with user_code(claim, "build", claim.build):
        compare = claim.build(spec)
    if not is_builtin(claim) and not callable(compare):
        raise UserCodeError(f"claim {claim.id!r}: build returned {type(compare).__name__}, not a function "
                            "(params, tokens) -> (lhs, rhs)")
    return compare


def user_comparison(claim: Claim, compare: Comparison, params: Params, tokens: jnp.ndarray) -> tuple:
    """``compare(params, tokens)``; for a user's claim, one that raises or does not return two
    arrays of compatible shapes is a `UserCodeError` naming the claim (`user_code`)."""
    with user_code(claim, "comparison", compare):
        sides = compare(params, tokens)
    if _package_run(claim, compare):
        return sides
    if not (isinstance(sides, tuple | list) and len(sides) == 2):
        raise UserCodeError(f"claim {claim.id!r}: comparison returned {type(sides).__name__}, not the pair (lhs, rhs)")
    with user_code(claim, "comparison"):  # e.g. a side that is no array
        lhs, rhs = (jnp.asarray(side) for side in sides)
    for name, side in (("lhs", lhs), ("rhs", rhs)):  # an error is a distance between real numbers
        if not jnp.issubdtype(side.dtype, jnp.floating):
            raise UserCodeError(f"claim {claim.id!r}: comparison returned {name} of dtype {side.dtype}, not floating "
                                "point (integers wrap around, booleans do not subtract: cast to the params' dtype)")
        if side.size == 0:
            raise UserCodeError(f"claim {claim.id!r}: comparison returned an empty {name} (shape {side.shape}): "
                                "nothing to compare")
    # The same shape, or a number against an array; broadcasting (T, d) against (d,) would compare
    # entries the claim never paired, and report a silent mistake as a failure of the mathematics.
    if lhs.shape != rhs.shape and () not in (lhs.shape, rhs.shape):
        raise UserCodeError(f"claim {claim.id!r}: comparison returned lhs of shape {lhs.shape} and rhs of shape "
                            f"{rhs.shape}: they must have the same shape (or one side be a single number)")
    return lhs, rhs


def user_measure(claim: Claim, measure: Callable, lhs: jnp.ndarray, rhs: jnp.ndarray) -> jnp.ndarray:
    """``measure(lhs, rhs)``, one number per draw; for a user's claim, a measure that raises or
    returns an array is a `UserCodeError` naming the claim (`user_code`)."""
    with user_code(claim, "measure", measure):
        value = measure(lhs, rhs)
    if _package_run(claim, measure):
        return value
    with user_code(claim, "measure"):  # None, a string, a complex number: not a real number
        value = jnp.asarray(value)
        if not (jnp.issubdtype(value.dtype, jnp.number) or value.dtype == bool) \
                or jnp.issubdtype(value.dtype, jnp.complexfloating):
            raise TypeError(f"returned {value.dtype} values, not real numbers")
    if value.shape != ():
        raise UserCodeError(f"claim {claim.id!r}: measure returned an array of shape {value.shape} per draw, "
                            "not one number")
    return value


def is_builtin(claim: Claim) -> bool:
    """`claim` is a built-in claim as registered (not a user's, nor a `dataclasses.replace`d copy):
    its code is the package's, so what it computes may be kept on disk between runs."""
    return claim.id in BUILTIN and REGISTRY.get(claim.id) is claim


def groups() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for claim in REGISTRY.values():
        out.setdefault(claim.group, []).append(claim.id)
    return out


def select(names: list[str]) -> list[Claim]:
    """Claims named by group (e.g. ``theorem1``), id (``thm1.gradient``) or ``all``."""
    chosen: list[Claim] = []
    known_groups = groups()
    for name in names:
        ids = list(REGISTRY) if name == "all" else known_groups.get(name, [name] if name in REGISTRY else None)
        if ids is None:
            close = difflib.get_close_matches(name, list(known_groups) + list(REGISTRY), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise InputError(f"unknown claim or group {name!r} ({hint}groups: {', '.join(sorted(known_groups))}; "
                             "`attnverify claims` lists every id)")
        chosen.extend(REGISTRY[i] for i in ids if REGISTRY[i] not in chosen)
    # every name checked, `all` among them too (a typo beside it is refused, not run over)
    return list(REGISTRY.values()) if not names or "all" in names else chosen


def refuse_untrainable(chosen: list[Claim], spec: ModelSpec) -> None:
    """An `InputError` naming the first claim of `chosen` that trains on a synthetic task
    (`Claim.trains_on`) that cannot be built at `spec`, unless its hypotheses are unmet there (a
    claim outside its hypotheses is reported without training: `verification.claims.wp`)."""
    from attnverify.numerics.training.synthetic_tasks import check_task

    for claim in chosen:
        if not claim.trains_on or claim.unmet(spec):
            continue
        for task in claim.trains_on:
            check_task(task, spec, who=f"claim {claim.id}")
