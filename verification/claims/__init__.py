"""Claim modules; importing this package fills `verification.registry.REGISTRY`."""

from attnverify.verification.claims import theorem1  # noqa: F401
