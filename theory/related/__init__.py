"""SymPy side of the related papers' claims (THEORY.md §8): Jain & Wallace, Brunner et al.,
Naim & Asher, Wen et al. Statements are typed once, as the sources (or THEORY.md) state
them; the derived forms come from `sympy.diff`, sums, enumeration or linear algebra.

This package never imports JAX.
"""
