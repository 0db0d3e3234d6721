"""Hook implementations of the pos_sync plugin (its features arrive with its own issue)."""
from core import hookimpl


@hookimpl
def capabilities():
    return []
