"""The REST API: a Falcon WSGI app built from the core's and the enabled plugins' routes.

Plugin authors need :func:`operation` (declare a responder's roles and
schemas) and the role tuples; :func:`issue_customer_token` mints a token for
a customer (e.g. after a WeChat OAuth login).
"""
from .app import ApiApp, create_app
from .operations import CUSTOMER, EVERYONE, STAFF, operation
from .tokens import issue_customer_token

__all__ = ["create_app", "ApiApp", "operation", "STAFF", "CUSTOMER", "EVERYONE", "issue_customer_token"]
