"""The staff web console (``/console/``): a browser client of the JSON API, served by the same app.

The core's pages and every enabled plugin's (``register_console_pages``)
share one shell, one login (the API's bearer token, kept in the tab's
``sessionStorage``) and ``static/lib.js``, the helpers a page module imports.
"""
from .pages import CORE_PAGES, ConsolePage, collect_pages, pages_for
from .web import mount

__all__ = ["mount", "collect_pages", "pages_for", "ConsolePage", "CORE_PAGES"]
