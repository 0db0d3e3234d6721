"""The pos_sync plugin: Offline POS terminals: catalogue download and idempotent sales upload."""
from core import Manifest

manifest = Manifest(
    name="pos_sync",
    version="0.1.0",
    summary="Offline POS terminals: catalogue download and idempotent sales upload",
    depends=(),
    migrations="migrations/versions",
    hooks="plugins.pos_sync.hooks",
)
