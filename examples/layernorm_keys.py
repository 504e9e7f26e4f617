"""Layer-normalised keys: k_t <- (k_t - mean_a k_t) / sqrt(var_a k_t + eps), per head."""

import sympy as sp
from attnverify.theory import SymbolicModel, symbols


class Model(SymbolicModel):
    def key(self, i, a, t):
        eps = self.constant("eps", 1e-5)
        b = sp.Symbol("b", integer=True, nonnegative=True)  # a fresh index for the statistics
        raw = super().key
        mean = sp.Sum(raw(i, b, t), (b, 0, symbols.d_att - 1)) / symbols.d_att
        variance = sp.Sum((raw(i, b, t) - mean) ** 2, (b, 0, symbols.d_att - 1)) / symbols.d_att
        return (raw(i, a, t) - mean) / sp.sqrt(variance + eps)
