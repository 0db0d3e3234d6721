"""The loyalty plugin: Membership points and tiers on an idempotent ledger."""
from core import Manifest

manifest = Manifest(
    name="loyalty",
    version="0.1.0",
    summary="Membership points and tiers on an idempotent ledger",
    depends=(),
    migrations="migrations/versions",
    hooks="plugins.loyalty.hooks",
)
