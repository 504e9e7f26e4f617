"""The shell form of LIME's limit (`theory.lime_shell`), compiled, for both removal modes.

For each shell s (s features removed, k = d - s kept) the model is expanded to first order
at the shell's mean mask q 1 (q = k/d): f_s = f(q 1) and g_s = grad f(q 1) by `jax.value_and_grad`
of a continuous extension of the model that equals it on binary masks:

* ``replace`` — the ratio form (`numerics.lime.ratio_form`), exact on binary masks;
* ``delete`` — the structured deletion model (`numerics.lime.structured.DeleteForm`) with
  real-valued positions: kept word t sits at P_t(z) = sum_{t' <= t} z_{j(t')}, and every
  position table is read through a Gaussian of width sqrt(sigma_t^2 + FLOOR^2), sigma_t^2 the
  within-shell variance of P_t (SymPy-derived, `derive_shell().variance`); the UNK tail
  starts after P_T. With widths -> 0 it is the deletion model itself (tests: 1e-12).

Strata: the EXACT_WORDS words that dominate attention (`dominant_features`) are held at each of
their 2^m states in every shell, with SymPy-counted probabilities, and the expansion runs over
the other words only (`theory.lime_shell`). The SymPy-derived shell terms then give Gamma, and
MG's Sigma^{-1} gives beta: d 2^m model evaluations with their gradients per document, no
sampling.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from attnverify.numerics import model as nm
from attnverify.numerics.lime import ratio_form as lime_ratio
from attnverify.numerics.lime import structured as lime_structured
from attnverify.numerics.lime.constants import check_features, check_width
from attnverify.numerics.lime.document import LimeDocument, check_removal, lime_document
from attnverify.numerics.lime.limit import checked_coefficients
from jaxtyping import Array, Float, Int

from attnverify.errors import InputError
from attnverify.lazy import lazy_module
from attnverify.spec import ModelSpec

# SymPy's side, loaded when the shell terms are first compiled (`attnverify.lazy`).
sp = lazy_module("sympy")
theory = lazy_module("attnverify.theory.lime_shell")
lime_theory = lazy_module("attnverify.theory.mardaoui_garreau")

#: Smallest smoothing width of a position (in positions): even where the within-shell variance
#: is 0, a real-valued position reads its neighbouring integer positions. Measured at T = 256,
#: d = 12, three draws: median relative error 0.045 / 0.052 / 0.046 for 0.3 / 0.5 / 1.0.
FLOOR = 0.5

#: Words held exactly (their 2^m states enumerated in every shell): the ones that dominate
#: attention. Measured on the trained model (d = 8, nu = 0.25, 8 documents), median relative
#: error 0.67 / 0.34 / 0.17 / 0.13 / 0.08 for 0 / 1 / 2 / 3 / 4 words held (Eq. 19: 0.71).
EXACT_WORDS = 4

#: (f, grad f) of a continuous extension of the model at a stratum's expansion point, given the
#: stratum's removed count and size over the features that are not held exactly.
ValueAndGrad = Callable[[Float[Array, " d"], Float[Array, ""]], tuple[Float[Array, ""], Float[Array, " d"]]]


def _log_binomial(binomial: sp.Expr) -> sp.Expr:
    # log Gamma as an opaque function: SymPy would turn loggamma of an integer-typed symbol back
    # into log(gamma(...)), which overflows; this one is compiled to `jax.scipy.special.gammaln`.
    log_gamma = sp.Function("log_gamma")
    n, k = binomial.args
    return log_gamma(n + 1) - log_gamma(k + 1) - log_gamma(n - k + 1)


@functools.lru_cache(maxsize=1)
def _compiled():
    r = theory.derive_shell()
    d, s, nu = lime_theory.d, lime_theory.s, lime_theory.nu
    # The stratum probability is a ratio of binomials: evaluated through log-gamma (d > 170 would
    # overflow the factorials).
    top, bottom = sp.fraction(r.stratum)
    log_stratum = _log_binomial(top) - _log_binomial(bottom)
    return {
        "log_stratum": sp.lambdify((theory.a_kept, theory.m_exact, s, d), log_stratum,
                                   modules=[{"log_gamma": jax.scipy.special.gammaln}, "jax"]),
        "weight": sp.lambdify((s, d, nu), r.weight, modules="jax"),
        "gamma_0": sp.lambdify((theory.f_s, theory.G, s, d), r.gamma_0, modules="jax"),
        "gamma_j": sp.lambdify((theory.f_s, theory.g_j, theory.G, s, d), r.gamma_j, modules="jax"),
        "variance": sp.lambdify((theory.sum_c, theory.sum_c2, s, d), r.variance, modules="jax"),
    }


def unsupported(spec: ModelSpec, removal: str) -> str | None:
    """Why the shell form is not defined for `spec` under `removal` (None when it is)."""
    if removal == "replace":
        return lime_ratio.unsupported(spec)
    reason = lime_structured.unsupported(spec)
    return None if reason is None else f"the deletion extension needs the word + position split: {reason}"


def shell_limit(value_and_grad: ValueAndGrad, d: int, nu: float, dtype,
                exact: Int[Array, " m"] | None = None) -> Float[Array, " d"]:
    """beta (d,) from the first-order expansion of f in every shell s = 1..d, and in every state
    of the m features in `exact` (held exactly; default none).

    value_and_grad(point, s_rest) returns f and grad f at the stratum's expansion point (held
    features at their state, the others at their mean), given the stratum's removed count among
    the d - m features that are not held.
    """
    c = _compiled()
    exact = jnp.zeros((0,), jnp.int32) if exact is None else exact
    m = exact.shape[0]
    held = jnp.zeros((d,), bool).at[exact].set(True)
    states = jnp.asarray(list(itertools.product((0.0, 1.0), repeat=m)), dtype).reshape(2**m, m)
    s = jnp.repeat(jnp.arange(1, d + 1, dtype=dtype), 2**m)  # every (shell, state) pair
    state = jnp.tile(states, (d, 1))
    d_rest = float(d - m)
    k_rest = (d - s) - state.sum(axis=1)  # kept among the features not held
    possible = (k_rest >= 0) & (k_rest <= d_rest)
    k_rest = jnp.clip(k_rest, 0.0, d_rest)
    s_rest = d_rest - k_rest
    probability = jnp.where(possible, jnp.exp(c["log_stratum"](state.sum(axis=1), float(m), s, float(d))), 0.0)
    point = jnp.broadcast_to((k_rest / d_rest)[:, None], (s.shape[0], d)).at[:, exact].set(state)
    # Strata in batches of 16 (`lax.map`): the deletion extension holds (T, T) Gaussian weights
    # per evaluation, so memory stays at 16 evaluations' worth for any d and m.
    f, g = jax.lax.map(lambda args: value_and_grad(*args), (point, s_rest), batch_size=16)
    G = jnp.where(held, 0.0, g).sum(axis=1)
    weight = c["weight"](s, float(d), jnp.asarray(nu, dtype)) * probability
    terms_0 = weight * c["gamma_0"](f, G, s_rest, d_rest)
    expanded = c["gamma_j"](f[:, None], g, G[:, None], s_rest[:, None], d_rest)
    terms = jnp.where(held, point * f[:, None], expanded)  # held: E[z_j f | stratum] = z_j f exactly
    gamma = jnp.concatenate([terms_0.sum()[None], jnp.einsum("n,nj->j", weight, terms)])
    magnitude = jnp.concatenate([jnp.abs(terms_0).sum()[None], jnp.einsum("n,nj->j", jnp.abs(weight), jnp.abs(terms))])
    return checked_coefficients(gamma, magnitude, d, nu)


def dominant_features(ratio: lime_ratio.RatioForm, m: int) -> Int[Array, " m"]:
    """The m features whose presence most changes some head's softmax normaliser relative to the
    all-UNK document: largest max_i |v_ij| / B_i (`numerics.lime.ratio_form`)."""
    return jnp.argsort(-jnp.max(jnp.abs(ratio.v) / ratio.B[:, None], axis=0))[:m].astype(jnp.int32)


def smoothed(table: Float[Array, " T *rest"], x: Float[Array, ""], width: Float[Array, ""]) -> jnp.ndarray:
    """A table over integer positions 0..T-1 read at a real position x through a normalised
    Gaussian of the given width (width -> 0 at integer x: the table entry itself)."""
    p = jnp.arange(table.shape[0], dtype=table.dtype)
    logits = -0.5 * ((p - x) / width) ** 2
    return jnp.tensordot(jax.nn.softmax(logits), table, axes=1)


def deletion_extension(form: lime_structured.DeleteForm, tab: lime_structured.Tables, spec: ModelSpec,
                       width: Float[Array, " T"]) -> Callable[[Float[Array, " d"]], Float[Array, ""]]:
    """f(z) for real z under deletion, positions read through Gaussians of `width` (T,): the
    last entry is the width of the UNK tail's start. Equals `delete_outputs` on binary z as
    width -> 0."""
    T = form.word_weight.shape[0]
    occurrences = form.occurrences.astype(width.dtype)
    pw, pwd = form.position_weight[:T], form.position_weighted_readout[:T]
    tail_w = form.tail_weight[:-1] - form.tail_weight[1:]  # exp(a(UNK) + b(p)) at each p
    tail_n = form.tail_numerator[:-1] - form.tail_numerator[1:]
    read = jax.vmap(smoothed, in_axes=(None, 0, 0))

    def f(z):
        position = z @ occurrences  # (T,): kept words up to t
        keep = jnp.where(form.is_word, z[form.feature], 0.0)
        g, gd = read(pw, position, width), read(pwd, position, width)  # (T, K), (T, K, C)
        normaliser = jnp.einsum("t,tk->k", keep, form.word_weight * g)
        numerator = jnp.einsum("t,tkc->kc", keep, form.word_weighted_readout * g[..., None]
                               + form.word_weight[..., None] * gd)
        after = jax.scipy.stats.norm.cdf((jnp.arange(T, dtype=z.dtype) - position[-1] - 0.5) / width[-1])
        normaliser = normaliser + after @ tail_w + form.cls_weight
        numerator = numerator + jnp.tensordot(after, tail_n, axes=1) + form.cls_numerator
        heads = numerator / normaliser[:, None] + tab.head_bias
        return lime_structured.reduced_link(lime_structured.aggregate(heads, spec), spec)

    return f


def position_widths(form: lime_structured.DeleteForm, s: Float[Array, ""], d: float,
                    varying: Array | None = None) -> Float[Array, " T"]:
    """sqrt(Var(P_t | s) + FLOOR^2) for every position t (SymPy-derived variance), over the
    `varying` features (a uniform subset of d of them with s removed; default: all)."""
    counts = form.occurrences.astype(s.dtype)  # c_l(t): occurrences of feature l up to t
    if varying is not None:
        counts = counts * varying[:, None]
    variance = _compiled()["variance"](counts.sum(axis=0), (counts**2).sum(axis=0), s, d)
    return jnp.sqrt(jnp.maximum(variance, 0.0) + FLOOR**2)


@functools.partial(jax.jit, static_argnames=("spec", "d", "removal", "exact_words"))
def shell_form(params: nm.Params, doc: LimeDocument, nu: float, *, spec: ModelSpec, d: int,
               removal: str, exact_words: int = EXACT_WORDS) -> Float[Array, " d"]:
    """The shell form of beta^inf for one document (traceable; see `unsupported`), holding the
    `exact_words` dominant words exactly (at most d - 2)."""
    dtype = params.embedding.dtype
    ratio = lime_ratio.ratio_form(params, doc, spec, d)
    exact = dominant_features(ratio, max(0, min(exact_words, d - 2)))
    varying = jnp.ones((d,), dtype).at[exact].set(0.0)
    if removal == "replace":

        def value_and_grad(point, s_rest):
            return jax.value_and_grad(lambda z: lime_ratio.output(ratio, z, spec))(point)
    else:
        tab = lime_structured.tables(params, spec, doc.tokens.shape[0])
        form = lime_structured.delete_form(tab, doc.tokens, doc.feature, d)

        def value_and_grad(point, s_rest):
            width = position_widths(form, s_rest, float(d - exact.shape[0]), varying)
            return jax.value_and_grad(deletion_extension(form, tab, spec, width))(point)

    return shell_limit(value_and_grad, d, nu, dtype, exact)


def shell_approximation(
    params: nm.Params, tokens, spec: ModelSpec, *, nu: float = 0.25, removal: str = "replace",
    words: list[str] | None = None, n_words: int | None = None, features: str = "words",
    exact_words: int = EXACT_WORDS,
):
    """The shell form for every LIME feature of the document: array (d,), `lime_document` order."""
    if exact_words < 0:
        raise InputError(f"shell form: exact_words must be >= 0, got {exact_words}")
    check_width(nu)
    check_removal(removal)
    reason = unsupported(spec, removal)
    if reason is not None:
        raise InputError(f"shell form: {reason}")
    doc, names = lime_document(tokens, words=words, n_words=n_words, features=features)
    check_features(len(names), what="shell form")
    return jax.device_get(shell_form(params, doc, nu, spec=spec, d=len(names), removal=removal,
                                     exact_words=exact_words))
