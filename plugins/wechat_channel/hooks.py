"""Hook implementations of the wechat_channel plugin (its features arrive with its own issue)."""
from core import hookimpl


@hookimpl
def capabilities():
    return []
