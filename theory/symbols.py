"""Symbols shared by every symbolic expression: sizes, parameter tensors, index names.

Expressions are written at index level (``IndexedBase`` + ``Sum`` with symbolic ranges),
never by scalar expansion, so a derivation holds for every T, d_e, d_att, d_out and K
(docs/theory.md §10). Bound indices have fixed names so that the same model quantity is the
same SymPy object wherever it appears.
"""

from __future__ import annotations

import sympy as sp

_size = dict(integer=True, positive=True)
_index = dict(integer=True, nonnegative=True)

# Sizes (docs/theory.md §1.2).
T, d_e, d_att, d_out, K, C = sp.symbols("T d_e d_att d_out K C", **_size)

# Inputs and parameters. e[t, k] is the embedding of position t *after* the positional
# encoding is added: the paper's gradients are taken with respect to it (docs/theory.md §1.1).
e = sp.IndexedBase("e")
W_q = sp.IndexedBase("W_q")  # [i, a, k]
W_k = sp.IndexedBase("W_k")  # [i, a, k]
W_v = sp.IndexedBase("W_v")  # [i, o, k]
W_l = sp.IndexedBase("W_l")  # [i, c, o]
b_q = sp.IndexedBase("b_q")  # [i, a]
b_k = sp.IndexedBase("b_k")  # [i, a]
b_v = sp.IndexedBase("b_v")  # [i, o]
b_l = sp.IndexedBase("b_l")  # [i, c]
# The additive and deep scorers' parameters (docs/theory.md §8.5; absent for the paper's dot scorer).
v_score = sp.IndexedBase("v_score")  # [i, a] (additive), [i, h] (deep)
U_score = sp.IndexedBase("U_score")  # [i, h, a] (deep)
# A per-head constant subtracted from every score before exp. Softmax does not depend on
# it, so differentiating with it held fixed is exact; numerics binds it to max_t gamma_t
# so that exp never overflows.
gamma_shift = sp.IndexedBase("gamma^*")  # [i]
# The same device for the output link: the sigmoid or class softmax of the logits is
# written with exp(z - z^*), z^* any constant (numerics binds max(0, z) or max_c z_c).
logit_shift = sp.Symbol("z^*", real=True)

# Bound indices: heads, positions (three roles), embedding, attention, value, class, and
# the deep scorer's hidden unit.
i = sp.Symbol("i", **_index)
t = sp.Symbol("t", **_index)
s = sp.Symbol("s", **_index)
r = sp.Symbol("r", **_index)
k = sp.Symbol("k", **_index)
a = sp.Symbol("a", **_index)
o = sp.Symbol("o", **_index)
h = sp.Symbol("h", **_index)  # hidden unit of the deep scorer (range d_att)
c = sp.Symbol("c", **_index)
# Free indices of a gradient: position tau, embedding coordinate m.
tau = sp.Symbol("tau", **_index)
m = sp.Symbol("m", **_index)

#: The size symbol that bounds each tensor axis, per tensor name.
AXES: dict[str, tuple[sp.Symbol, ...]] = {
    "e": (T, d_e),
    "W_q": (K, d_att, d_e),
    "W_k": (K, d_att, d_e),
    "W_v": (K, d_out, d_e),
    "W_l": (K, C, d_out),
    "b_q": (K, d_att),
    "b_k": (K, d_att),
    "b_v": (K, d_out),
    "b_l": (K, C),
    "v_score": (K, d_att),
    "U_score": (K, d_att, d_att),
    "gamma^*": (K,),
    "z^*": (),
}

#: Range of the free indices of a gradient expression.
FREE_SIZES: dict[sp.Symbol, sp.Symbol] = {tau: T, m: d_e}
