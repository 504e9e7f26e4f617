"""A residual value path: v_t = W_v e_t + e_t[:d_out] (the first d_out embedding coordinates).

With d_out < d_e, d f / d e[t, m] gains W_l[i, c, m] only for m < d_out: the derivation
keeps that range condition instead of dropping it.
"""

from attnverify.theory import SymbolicModel, symbols


class Model(SymbolicModel):
    def value(self, i, o, t):
        return super().value(i, o, t) + symbols.e[t, o]
