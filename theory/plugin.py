"""A model variant as a plugin: a `SymbolicModel` subclass carried by a `PluginSpec`.

`Plugin` names the variant (its file) and holds its class; `PluginSpec` is a `ModelSpec`
(sizes and switches: the model the plugin builds on with ``super()``) that also carries
the plugin, so every layer that takes a spec builds the variant: ``SymbolicModel(spec)``
is the plugin's class, draws add its parameters (`numerics.plugin_model`), and the
registry asks the spec whether a claim's hypotheses hold.

Hypotheses are decided, not assumed (``docs/plugins.md``): a statement that assumes the
model of the switches ``requires`` holds its hypotheses under a plugin exactly when the
plugin's forward expression, and every quantity the statements are written in, is *proved*
equal (`calculus.prove_equal`, for every size) to that of the spec with those switches
(`is_model_of`). Not proved means the
hypotheses are unmet: the statement's verdict is then "hypotheses unmet", never a FAIL.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
from dataclasses import dataclass
from typing import Any

import sympy as sp
from attnverify.theory import symbols as S
from attnverify.theory.calculus import normal_form, prove_equal
from attnverify.theory.model import QUANTITIES, Constant, Parameter, SymbolicModel

from attnverify.errors import InputError, describe, warn_once
from attnverify.spec import PAPER, SWITCHES, ModelSpec, check_requires
from attnverify.validate import shortened


@dataclass(frozen=True, eq=False)
class Plugin:
    """A model variant: `model` (a `SymbolicModel` subclass) read from `path`.

    Compared by identity: the same file loaded twice gives two plugins (a re-run notebook
    cell may have changed it). `digest` is the SHA-256 of the file's text (empty when the
    class was given directly); `claims` the ids of the claims the file registered.
    """

    name: str
    model: type
    path: str = ""
    digest: str = ""
    claims: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """JSON-ready identification: name, file, digest, claims."""
        return {"name": self.name, "file": self.path, "sha256": self.digest, "claims": list(self.claims)}


@dataclass(frozen=True)
class PluginSpec(ModelSpec):
    """A `ModelSpec` whose model is `plugin`'s class, built on the spec's own switches."""

    plugin: Plugin | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.plugin is None:
            raise InputError("PluginSpec needs a plugin")

    @property
    def base(self) -> ModelSpec:
        """The same sizes and switches without the plugin: the model `super()` builds."""
        return ModelSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSpec)})

    def to_json(self) -> str:
        return json.dumps({**json.loads(self.base.to_json()), "plugin": self.plugin.describe()}, sort_keys=True)

    def deviations(self) -> dict[str, Any]:
        return {**self.base.deviations(), "plugin": self.plugin.name}

    # -- hypotheses, decided ---------------------------------------------------------------
    def satisfies(self, requires: dict[str, Any]) -> bool:
        """True when the plugin's model (its forward and named quantities) is proved equal to
        that of the spec with the switches of `requires`, and its sizes are those `requires`
        names (no requirement: always true)."""
        return not self.unmet(requires)

    def unmet(self, requires: dict[str, Any]) -> dict[str, Any]:
        """``{hypothesis: what this model has}`` for the hypotheses that do not hold (empty when
        they all do). A size is compared by value: a proof holds for every size, so it cannot
        settle one (a threshold measured at T = 16 says nothing at T = 8). A switch is proved;
        a plugin is not a switch value: a switch set to another value (a flag) reads as that value,
        and when the plugin's model with the assumed switches is still not proved to be the assumed
        one, every other assumed switch reads as the plugin (``plugin NAME``)."""
        check_requires(requires)
        sizes = {k: getattr(self, k) for k, v in requires.items() if k not in SWITCHES and getattr(self, k) != v}
        switches = {k: v for k, v in requires.items() if k in SWITCHES}
        if not switches or is_model_of(self, self.base.replace(**switches)):
            return sizes
        flagged = {k: getattr(self, k) for k, v in switches.items() if getattr(self, k) != v}
        assumed = self.base.replace(**switches)
        if flagged and is_model_of(plugin_spec(self.plugin, assumed), assumed):
            return {**sizes, **flagged}
        return {**sizes, **flagged, **{k: f"plugin {self.plugin.name}" for k in switches if k not in flagged}}


def plugin_spec(plugin: Plugin, spec: ModelSpec = PAPER) -> PluginSpec:
    """`spec` (sizes and switches) carrying `plugin`."""
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(ModelSpec)}
    return PluginSpec(**fields, plugin=plugin)


def paper_switches(spec: ModelSpec) -> ModelSpec:
    """`spec`'s sizes with the paper's switches, and no plugin: the paper's model."""
    base = spec.base if isinstance(spec, PluginSpec) else spec
    return base.replace(**{name: getattr(PAPER, name) for name in SWITCHES})


def is_model_of(spec: ModelSpec, target: ModelSpec) -> bool:
    """True when `spec`'s model is proved, for every size, to be `target`'s: its forward, and
    every named quantity the statements are written in (False: not proved). The forward alone
    is not enough: a plugin that moves the 1/sqrt(d_att) into the query has the paper's forward,
    but the paper's formula written in that query scales it twice."""
    return _forward_equal(spec, target) and not unequal_quantities(spec, target)


@functools.lru_cache(maxsize=128)
def _forward_equal(spec: ModelSpec, target: ModelSpec) -> bool:
    return prove_equal(SymbolicModel(spec).output(), SymbolicModel(target).output())


@functools.lru_cache(maxsize=128)
def unequal_quantities(spec: ModelSpec, target: ModelSpec) -> tuple[str, ...]:
    """The named quantities of `spec`'s model (`QUANTITIES`, the forward aside) not proved equal
    to `target`'s at the same indices."""
    ours, theirs = SymbolicModel(spec), SymbolicModel(target)
    return tuple(name for name in QUANTITIES if name != "output" and not prove_equal(
        getattr(ours, name)(*_arguments(name)), getattr(theirs, name)(*_arguments(name))))


@functools.lru_cache(maxsize=128)
def shifts_cancel(spec: ModelSpec) -> bool:
    """Whether the forward of `spec`'s model, and its attention alpha, are *proved* not to depend
    on the shifts gamma^* (each head's) and z^*: d f / d gamma^*_j = d alpha / d gamma^*_j = 0 for
    every head j, and d f / d z^* = 0, as in the built-in softmax and output links. Derivations
    hold the shifts constant, so only then may the numerics move them with each draw to keep exp
    from overflowing. A plugin can break it:
    a "null slot" added to the normaliser, ``super().normaliser(i) + 1``, is a slot of score
    gamma^*; a floor ``Max(weight, 0.05)`` acts relative to the largest weight. (A one-draw
    numerical test missed the floor at small scores, and an attention sink drawn at 0: docs/theory.md
    §10.3.) Not proved means the shifts are bound to 0."""
    model = SymbolicModel(spec)
    output, alpha = model.output(), model.alpha(S.i, S.t)  # alpha: what explain reports, the statements use
    head = sp.Dummy("j", integer=True, nonnegative=True)
    ranges = {head: (sp.Integer(0), S.K - 1), S.i: (sp.Integer(0), S.K - 1), S.t: (sp.Integer(0), S.T - 1)}
    if not all(prove_equal(sp.diff(x, S.gamma_shift[head]), sp.Integer(0), ranges) for x in (output, alpha)):
        return False
    return S.logit_shift not in output.free_symbols or prove_equal(sp.diff(output, S.logit_shift), sp.Integer(0))


def shift_exponent(spec: ModelSpec) -> tuple[sp.Expr, sp.Expr, sp.Expr] | None:
    """``(E_0, r, F)`` with the attention weight of `spec`'s model ``F(i, t) exp(E_0(i, t) - r(i)
    gamma^*_i)``, where F, E_0 and r are free of the shifts and r of t; None when the weight has no
    such exponent. The numerics then put gamma^*_i where the largest exponent over the positions
    that F does not zero is 0 (the max of E_0 / r for r > 0), so that exp never overflows, nor
    underflows at every live position: the built-in weight has ``(score, 1, 1)``, and a plugin's
    ``exp(score / temp - gamma^*)`` has ``(score / temp, 1, 1)``. Its largest weight was
    e^{max score (1 / temp - 1)} at the scores' max, which overflowed for temp = 0.002 in float64
    and silently zeroed the softmax Jacobian in the backward pass."""
    shift = S.gamma_shift[S.i]
    weight = sp.powsimp(SymbolicModel(spec).weight(S.i, S.t))
    factors = sp.Mul.make_args(weight)
    shifted = [f for f in factors if f.has(S.gamma_shift)]
    if len(shifted) != 1 or not isinstance(shifted[0], sp.exp):
        return None
    exponent = shifted[0].args[0]
    ranges = {S.i: (sp.Integer(0), S.K - 1), S.t: (sp.Integer(0), S.T - 1)}
    rate = normal_form(-sp.diff(exponent, shift), ranges)  # sympy.diff leaves sums of 0
    if rate.has(S.gamma_shift) or rate.has(S.t):
        return None
    base = exponent.subs(shift, 0)  # the exponent is linear in gamma^*_i: its derivative is free of it
    if base.has(S.gamma_shift):
        return None
    return base, rate, sp.Mul(*[f for f in factors if f is not shifted[0]])


def logit_shift_exponents(spec: ModelSpec) -> tuple[tuple[sp.Expr, sp.Expr, dict], ...] | None:
    """Where z^* enters `spec`'s output: one ``(E_0, r, ranges)`` per exp of the output that holds
    it, ``exp(E_0 - r z^*)``, with r a nonzero number of the same sign for all and E_0 free of z^*;
    ``ranges`` (``{index: size}``) are the indices of the sums around that exp that E_0 runs over
    (the class index c in the softmax's normaliser). None when z^* enters otherwise. The numerics
    then put z^* where the largest exponent is 0, max E_0 / r (min for r < 0): for the built-in
    links that is the logits' max (sigmoid: max(0, z)), and for a plugin's ``exp(z / temp - z^*)``
    the max of z / temp. Bound to the logits' max, that output overflowed the normaliser's square
    in the backward pass for temp = 0.0004 and gave gradients 100 % off, or finite where the true
    one is 0, without a NaN."""
    output = sp.powsimp(SymbolicModel(spec).output())
    found: list[tuple[sp.Expr, dict]] = []

    def walk(expr: sp.Expr, bound: dict) -> None:
        if isinstance(expr, sp.exp) and expr.has(S.logit_shift):
            found.append((expr.args[0], bound))
        elif isinstance(expr, sp.Sum):
            inner = dict(bound)
            for index, low, high in expr.limits:
                inner[index] = (low, high)
            walk(expr.function, inner)
        else:
            for arg in expr.args:
                walk(arg, bound)

    walk(output, {})
    if not found or output.xreplace({sp.exp(e): sp.Integer(1) for e, _ in found}).has(S.logit_shift):
        return None
    parts = []
    for exponent, bound in found:
        rate, base = -sp.diff(exponent, S.logit_shift), exponent.subs(S.logit_shift, 0)
        if not rate.is_Number or rate == 0 or base.has(S.logit_shift):
            return None
        used = {index: limits for index, limits in bound.items() if base.has(index)}
        if any(low != 0 for low, _ in used.values()):
            return None
        parts.append((base, rate, {index: high + 1 for index, (_, high) in used.items()}))
    if len({part[1] > 0 for part in parts}) > 1:
        return None
    return tuple(parts)


def forward_proof(spec: ModelSpec) -> str:
    """Whether the forward of `spec`'s model is proved to be the paper's: "proved" / "not proved"
    (the paper's hypotheses also need its named quantities: `is_model_of`)."""
    return "proved" if _forward_equal(spec, paper_switches(spec)) else "not proved"


# -- checking a variant --------------------------------------------------------------------
def _arguments(name: str) -> tuple:
    i, t, a, o = S.i, S.t, S.a, S.o
    return {"query": (i, a), "key": (i, a, t), "value": (i, o, t), "score": (i, t), "readout": (i, t),
            "weight": (i, t), "normaliser": (i,), "alpha": (i, t), "head_output": (i,), "logit": (),
            "output": ()}[name]


def overridden(model: type) -> list[str]:
    """The quantities `model` defines itself (not inherited from `SymbolicModel`)."""
    return [name for name in QUANTITIES if getattr(model, name) is not getattr(SymbolicModel, name)]


def check_model(model: type, spec: ModelSpec = PAPER) -> tuple[dict[str, Parameter], dict[str, Constant]]:
    """Build every quantity of `model` under `spec`, leaves first, and return its
    declarations. Raises a one-line `InputError` naming the method for a method that raises
    or returns something that is not a SymPy expression."""
    if not (isinstance(model, type) and issubclass(model, SymbolicModel)):
        raise InputError(f"Model is not a subclass of SymbolicModel (got {model!r})")
    reason = model.nonfinite_reason
    if reason is not None and not (isinstance(reason, str) and reason.strip() and "\n" not in reason):
        raise InputError(f"Model.nonfinite_reason must be a sentence on one line (str), got {shortened(repr(reason))}")
    try:
        instance = model(spec)
    except InputError:
        raise
    except (Exception, SystemExit) as err:  # noqa: BLE001 (user code: any error, or an exit, becomes one line)
        raise InputError(f"Model({spec.__class__.__name__}) raised {describe(err)}") from None
    for name in QUANTITIES:
        try:
            value = getattr(instance, name)(*_arguments(name))
        except InputError as err:
            raise InputError(f"Model.{name}: {err}") from None
        except (Exception, SystemExit) as err:  # noqa: BLE001 (a method may call sys.exit: KeyboardInterrupt stays one)
            raise InputError(f"Model.{name} raised {describe(err)}") from None
        if not isinstance(value, sp.Expr):
            raise InputError(f"Model.{name} returned {type(value).__name__}, not a SymPy expression "
                             "(wrap numbers as sympy.Integer or sympy.Rational; a measured value: self.constant)")
        if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):  # SymPy folds them: a NaN forward is a constant, its gradient 0
            raise InputError(f"Model.{name} is not finite: SymPy made it {_undefined(value)}, so every gradient of "
                             "it would be 0 and every comparison of gradients would hold")
    _check_indices_bound(instance)
    _check_alpha_enters_the_forward(model, instance)
    _warn_near_misses(model)
    forward = instance.output()
    # e.g. a constant output, terms in e that SymPy cancelled, or a factor Sum(0, ...) (a value of 0)
    if not forward.has(S.e) or normal_form(forward) == 0:
        raise InputError(f"Model.output does not depend on the token embeddings e (it is {shortened(str(forward))}), "
                         "so every gradient of it would be 0 and every comparison of gradients would hold")
    return instance.declarations()


def _warn_near_misses(model: type) -> None:
    """Warn of a public method or attribute of `model` that SymbolicModel does not have but whose name is
    close to one it has: a misspelt override (``scroe``, ``nonfinite_reasn``) is never read, and the
    plugin is the paper's model, or its NaN draws are not declared."""
    known = [name for name in dir(SymbolicModel) if not name.startswith("_")]
    for klass in model.__mro__:
        if klass is SymbolicModel or not issubclass(klass, SymbolicModel):
            continue
        for name in vars(klass):
            if name.startswith("_") or name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            if close:
                warn_once(f"Model.{name} overrides nothing: SymbolicModel has no {name} (did you mean "
                          f"{close[0]}? a helper of your own is best named _{name})")


def _undefined(value: sp.Expr) -> str:
    """The first non-finite constant in `value`, as SymPy prints it (nan, zoo, oo, -oo)."""
    if value in (sp.nan, sp.zoo, sp.oo, -sp.oo):
        return str(value)
    found = next((c for c in (sp.nan, sp.zoo, sp.oo, -sp.oo) if value.has(c)), value)
    return f"an expression holding {found}"


#: Index names a forward sums over: none may be free in it.
_BOUND_INDICES = (S.i, S.t, S.s, S.r, S.k, S.a, S.o, S.h, S.c, S.tau, S.m)


def _check_indices_bound(instance: SymbolicModel) -> None:
    """The forward (a number per model) has no free index. SymPy's Sum moves a Piecewise out of
    itself, conditions and all (`piecewise_fold`), so a Piecewise whose condition is on the summed
    index leaves that index free, and the forward means something else than was written."""
    free = sorted(str(x) for x in instance.output().free_symbols & set(_BOUND_INDICES))
    if free:
        if not instance.output().has(sp.Piecewise):
            raise InputError(f"the forward (Model.output) has the free index {', '.join(free)}: a method uses an "
                             "index that no sum of the forward runs over (a method gets its indices as arguments: "
                             "score(i, t), value(i, o, t); sum any other inside the method)")
        raise InputError(f"the forward (Model.output) has the free index {', '.join(free)}: SymPy moves a "
                         "Piecewise out of a Sum over an index its condition names; write such a condition "
                         "with Heaviside or KroneckerDelta (e.g. Heaviside(4 - t, 1) for t < 5, 1 - "
                         "KroneckerDelta(t, 0) for t != 0)")


def _check_alpha_enters_the_forward(model: type, instance: SymbolicModel) -> None:
    """`alpha` is what the attention is reported as and what the statements are written in; the
    forward (`head_output`) uses `weight` and `normaliser`. A plugin that changes alpha alone
    would report an attention its forward does not use: refused unless it is weight/normaliser."""
    if "alpha" not in overridden(model) or "head_output" in overridden(model):
        return
    i, t = _arguments("alpha")
    alpha, ratio = instance.alpha(i, t), instance.weight(i, t) / instance.normaliser(i)
    if alpha.atoms(sp.Float) or ratio.atoms(sp.Float):  # the prover refuses a Float: say why
        raise InputError("Model.alpha or weight / normaliser holds a floating-point number, which the prover "
                         "cannot check (SymPy rounds Float arithmetic as it builds): write it as sympy.Rational, "
                         "or declare it with self.constant")
    if not prove_equal(alpha, ratio):
        raise InputError("Model.alpha is not weight / normaliser, and the forward uses those two (through "
                         "head_output): override weight and normaliser instead (e.g. weight = sigmoid(score), "
                         "normaliser = 1), or head_output as well")
