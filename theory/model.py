"""The model's forward expression in SymPy: `SymbolicModel`, one method per named quantity.

Each method returns the index-level expression of one named quantity of ``docs/theory.md
§1``: the query q^(i), key k_t^(i), score gamma_t^(i) (dot, additive or deep scorer),
value v_t^(i), read-out s_t^(i), unnormalised weight, normaliser, attention alpha_t^(i),
head output f_i, class logits and the explained output f. The switches of a `ModelSpec`
change the expressions; nothing downstream is typed in by hand.

A model variant is a subclass that overrides any of these methods, building on
``super()`` and on the symbols of `theory.symbols` (a *plugin*, ``docs/plugins.md``). A
subclass may declare new parameter tensors (`SymbolicModel.parameter`) and scalar
constants (`SymbolicModel.constant`); draws and the model file then know them.
``SymbolicModel(spec)`` builds the model that `spec` describes: for a spec that carries a
plugin (`theory.plugin.PluginSpec`), the plugin's class.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass

import sympy as sp
from attnverify.theory import symbols as S

from attnverify import validate
from attnverify.errors import InputError
from attnverify.spec import PAPER, ModelSpec

#: The size symbols a declared parameter's axes may use (or a positive integer).
SIZES: tuple[sp.Symbol, ...] = (S.T, S.d_e, S.d_att, S.d_out, S.K, S.C)
#: How a declared parameter is initialised in a random draw (`numerics.draws`).
INITS = ("normal", "uniform", "zeros", "ones")
#: The quantities a variant may override, leaves first (the order a plugin is checked in).
QUANTITIES = ("query", "key", "value", "score", "readout", "weight", "normaliser", "alpha",
              "head_output", "logit", "output")


@dataclass(frozen=True)
class Parameter:
    """A parameter tensor declared by a model variant.

    shape: one size symbol of `SIZES` (or a positive integer) per axis. init: "normal"
    (N(0, scale^2)), "uniform" (U(-0.1 s, 0.1 s) with s = scale times the draw's init scale:
    the paper's init of a linear map), "zeros" or "ones".
    """

    name: str
    shape: tuple[sp.Expr, ...]
    init: str = "normal"
    scale: float = 1.0


@dataclass(frozen=True)
class Constant:
    """A scalar constant declared by a model variant: a symbol in every derivation (so a
    result holds for every value), bound to `value` in numerics and stored in the model file."""

    name: str
    value: float
    symbol: sp.Symbol


#: Names a declaration may not take: the model's own tensors, sizes and indices.
RESERVED = frozenset(S.AXES) | {str(x) for x in (*SIZES, S.i, S.t, S.s, S.r, S.k, S.a, S.o, S.h, S.c, S.tau, S.m)} \
    | {"embedding", "vocab", "spec", "plugin"}


class SymbolicModel:
    """Index-level SymPy expressions for the model of `spec` (sizes stay symbolic).

    ``SymbolicModel()`` is the paper's model; ``SymbolicModel(spec)`` the model of `spec`
    (the plugin's class when `spec` carries one).
    """

    #: Where a variant's model is undefined by construction, in a sentence (a head whose scores are
    #: all <= 0 divides 0 by 0 under ReLU-normalised attention): the built-in claims run on it then
    #: leave every NaN draw out, counted and named, instead of failing on it (`Claim.nonfinite_reason`).
    nonfinite_reason: str | None = None

    def __new__(cls, spec: ModelSpec | None = None, *args, **kwargs):
        plugin = getattr(spec, "plugin", None)
        if cls is SymbolicModel and plugin is not None:
            return super().__new__(plugin.model)  # then plugin.model.__init__(spec) runs
        return super().__new__(cls)

    def __init__(self, spec: ModelSpec | None = None):
        self.spec = PAPER if spec is None else spec
        self.explained = sp.Integer(self.spec.explained_class)

    # -- declarations of a model variant ---------------------------------------------------
    @property
    def declared_parameters(self) -> dict[str, Parameter]:
        """The parameters declared so far (`declarations` collects every one)."""
        return self.__dict__.setdefault("_parameters", {})

    @property
    def declared_constants(self) -> dict[str, Constant]:
        return self.__dict__.setdefault("_constants", {})

    def _check_name(self, name: str, kind: str) -> None:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise InputError(f"{kind} name {name!r} is not a Python identifier")
        if name in RESERVED:
            raise InputError(f"{kind} name {name!r} is taken by the model's own symbols")
        other = self.declared_constants if kind == "parameter" else self.declared_parameters
        if name in other:
            raise InputError(f"{name!r} is declared both as a parameter and as a constant")

    def parameter(self, name: str, shape: tuple, init: str = "normal", scale: float = 1.0) -> sp.IndexedBase:
        """Declare a parameter tensor and return it (an `IndexedBase`: index it, ``b[i, t]``).

        shape: a size symbol of `theory.symbols` (T, d_e, d_att, d_out, K, C) or a positive
        integer per axis, e.g. ``(symbols.K, symbols.T)``. init: "normal" (N(0, scale^2)),
        "uniform" (the paper's U(-0.1, 0.1) init of a linear map, times scale and the draw's
        init scale), "zeros" or "ones". Declaring the same name again with the same shape
        and init returns the same tensor.
        """
        self._check_name(name, "parameter")
        if not isinstance(shape, (tuple, list)):
            raise InputError(f"parameter {name}: shape must be a tuple of sizes, got {shape!r}")
        axes = []
        for size in shape:
            if isinstance(size, int) and not isinstance(size, bool) and size > 0:
                axes.append(sp.Integer(size))
            elif isinstance(size, sp.Integer) and size > 0:
                axes.append(size)
            elif size in SIZES:
                axes.append(size)
            else:
                raise InputError(f"parameter {name}: unknown size {size!r} "
                                 f"(use {', '.join(map(str, SIZES))} from attnverify.theory.symbols, "
                                 "or a positive integer)")
        if init not in INITS:
            raise InputError(f"parameter {name}: init must be one of {', '.join(INITS)}, got {init!r}")
        number = float(validate.number(f"parameter {name}: scale", scale, low=0))  # NumPy scalars too
        declared = Parameter(name, tuple(axes), init, number)
        previous = self.declared_parameters.setdefault(name, declared)
        if previous != declared:
            raise InputError(f"parameter {name} declared twice differently: {previous} and {declared}")
        return sp.IndexedBase(name)

    def constant(self, name: str, value: float) -> sp.Symbol:
        """Declare a scalar constant with its value and return its symbol (positive when
        the value is, else real). Derivations keep the symbol; numerics bind the value."""
        self._check_name(name, "constant")
        number = float(validate.number(f"constant {name}: value", value))  # NumPy scalars too, not bools
        symbol = sp.Symbol(name, positive=True) if number > 0 else sp.Symbol(name, real=True)
        declared = Constant(name, number, symbol)
        previous = self.declared_constants.setdefault(name, declared)
        if previous != declared:
            raise InputError(f"constant {name} declared twice with different values: "
                             f"{previous.value} and {declared.value}")
        return symbol

    def declarations(self) -> tuple[dict[str, Parameter], dict[str, Constant]]:
        """Every parameter and constant the model declares (building its output collects them)."""
        self.output()
        return dict(self.declared_parameters), dict(self.declared_constants)

    # -- per-head, per-position quantities ---------------------------------------------
    def query(self, i: sp.Expr, a: sp.Expr) -> sp.Expr:
        """q_a^(i): from the [CLS] embedding e_0 (paper) or the mean embedding."""
        if self.spec.query == "cls":
            source = S.e[0, S.k]
        else:
            source = sp.Sum(S.e[S.r, S.k], (S.r, 0, S.T - 1)) / S.T
        q = sp.Sum(S.W_q[i, a, S.k] * source, (S.k, 0, S.d_e - 1))
        return q + S.b_q[i, a] if self.spec.biases else q

    def key(self, i: sp.Expr, a: sp.Expr, t: sp.Expr) -> sp.Expr:
        key = sp.Sum(S.W_k[i, a, S.k] * S.e[t, S.k], (S.k, 0, S.d_e - 1))
        return key + S.b_k[i, a] if self.spec.biases else key

    def score(self, i: sp.Expr, t: sp.Expr) -> sp.Expr:
        """gamma_t^(i), by the spec's scorer (docs/theory.md §1.2, §8.5):

        * dot (paper): <q^(i), k_t^(i)>, divided by sqrt(d_att) when scaling is on;
        * additive: sum_a v_a^(i) tanh(q_a^(i) + k_{t,a}^(i));
        * deep: sum_h v_h^(i) tanh(sum_a U_{h,a}^(i) tanh(q_a^(i) + k_{t,a}^(i))).
        """
        if self.spec.scorer == "dot":
            dot = sp.Sum(self.query(i, S.a) * self.key(i, S.a, t), (S.a, 0, S.d_att - 1))
            return dot / sp.sqrt(S.d_att) if self.spec.scale_scores else dot
        if self.spec.scorer == "additive":
            hidden = sp.tanh(self.query(i, S.a) + self.key(i, S.a, t))
            return sp.Sum(S.v_score[i, S.a] * hidden, (S.a, 0, S.d_att - 1))
        inner = sp.Sum(S.U_score[i, S.h, S.a] * sp.tanh(self.query(i, S.a) + self.key(i, S.a, t)),
                       (S.a, 0, S.d_att - 1))
        return sp.Sum(S.v_score[i, S.h] * sp.tanh(inner), (S.h, 0, S.d_att - 1))

    def value(self, i: sp.Expr, o: sp.Expr, t: sp.Expr) -> sp.Expr:
        v = sp.Sum(S.W_v[i, o, S.k] * S.e[t, S.k], (S.k, 0, S.d_e - 1))
        if self.spec.biases:
            v = v + S.b_v[i, o]
        return sp.tanh(v) if self.spec.value_nonlinearity == "tanh" else v

    def readout(self, i: sp.Expr, t: sp.Expr, c: sp.Expr | None = None) -> sp.Expr:
        """s_t^(i) = W_l^(i) v_t^(i) for class c (default: the explained class)."""
        c = self.explained if c is None else c
        return sp.Sum(S.W_l[i, c, S.o] * self.value(i, S.o, t), (S.o, 0, S.d_out - 1))

    def weight(self, i: sp.Expr, t: sp.Expr) -> sp.Expr:
        """Unnormalised attention exp(gamma_t - gamma^*): the shift cancels in alpha."""
        return sp.exp(self.score(i, t) - S.gamma_shift[i])

    def normaliser(self, i: sp.Expr) -> sp.Expr:
        return sp.Sum(self.weight(i, S.s), (S.s, 0, S.T - 1))

    def alpha(self, i: sp.Expr, t: sp.Expr) -> sp.Expr:
        """alpha_t^(i): softmax over all T positions ([CLS], words and padding)."""
        return self.weight(i, t) / self.normaliser(i)

    def head_output(self, i: sp.Expr, c: sp.Expr | None = None) -> sp.Expr:
        """f_i = W_l^(i) sum_t alpha_t^(i) v_t^(i) (+ b_l)."""
        pooled = sp.Sum(self.weight(i, S.t) * self.readout(i, S.t, c), (S.t, 0, S.T - 1))
        out = pooled / self.normaliser(i)
        if self.spec.biases:
            out = out + S.b_l[i, self.explained if c is None else c]
        return out

    # -- the output ----------------------------------------------------------------------
    def logit(self, c: sp.Expr | None = None) -> sp.Expr:
        total = sp.Sum(self.head_output(S.i, c), (S.i, 0, S.K - 1))
        return total / S.K if self.spec.head_aggregation == "mean" else total

    def output(self) -> sp.Expr:
        """The explained output f(e): raw logit, its sigmoid, or the softmax probability."""
        z = self.logit()
        if self.spec.output_link == "logit":
            return z
        shift = S.logit_shift  # cancels exactly; keeps exp from overflowing
        if self.spec.output_link == "sigmoid":
            # sigma(z) = 1 / (1 + exp(-z)) = exp(z - z*) / (exp(-z*) + exp(z - z*))
            return sp.exp(z - shift) / (sp.exp(-shift) + sp.exp(z - shift))
        return sp.exp(z - shift) / sp.Sum(sp.exp(self.logit(S.c) - shift), (S.c, 0, S.C - 1))
