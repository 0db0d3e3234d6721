"""A test plugin that depends on ``p2o_fixture`` (and whose table points at its table)."""
from core import Manifest

manifest = Manifest(
    name="p2o_fixture_child",
    version="0.0.1",
    summary="Test plugin depending on p2o_fixture",
    depends=("p2o_fixture",),
    migrations="migrations",
)
TABLE = "p2o_fixture_child_rows"
