"""Claim modules; importing this package fills `verification.registry.REGISTRY`."""

from attnverify.verification.claims import theorem1  # noqa: F401
from attnverify.verification.claims import lime, theorem2  # noqa: F401
from attnverify.verification.claims import identifiability, info, jw, jw_empirical  # noqa: F401
