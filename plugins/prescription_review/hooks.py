"""Hook implementations of the prescription_review plugin (its features arrive with its own issue)."""
from core import hookimpl


@hookimpl
def capabilities():
    return []
