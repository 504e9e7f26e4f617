"""Claim modules; importing this package fills `verification.registry.REGISTRY`.

The import order is the registration order, which tables and reports follow (the paper's
theorems first), so the imports are deliberately not sorted.
"""
# ruff: noqa: I001

from attnverify.verification.claims import theorem1  # noqa: F401
from attnverify.verification.claims import lime, theorem2  # noqa: F401
from attnverify.verification.claims import identifiability, info, jw, jw_empirical  # noqa: F401
from attnverify.verification.claims import wp  # noqa: F401
from attnverify.verification.claims import saliency  # noqa: F401
from attnverify.verification.claims import scorer  # noqa: F401
