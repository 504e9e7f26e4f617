"""A learned per-position score bias: gamma_t^(i) = <q, k_t> / sqrt(d_att) + b_pos[i, t]."""

from attnverify.theory import SymbolicModel, symbols


class Model(SymbolicModel):
    def score(self, i, t):
        b_pos = self.parameter("b_pos", (symbols.K, symbols.T), init="normal")
        return super().score(i, t) + b_pos[i, t]
