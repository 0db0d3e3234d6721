"""The prescription_review plugin: Pharmacist review of prescription (Rx) orders: prescription first, then drug."""
from core import Manifest

manifest = Manifest(
    name="prescription_review",
    version="0.1.0",
    summary="Pharmacist review of prescription (Rx) orders: prescription first, then drug",
    depends=(),
    migrations="migrations/versions",
    hooks="plugins.prescription_review.hooks",
)
