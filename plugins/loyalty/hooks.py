"""Hook implementations of the loyalty plugin (its features arrive with its own issue)."""
from core import hookimpl


@hookimpl
def capabilities():
    return []
