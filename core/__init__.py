"""pharmo2o core: products, stores, lot stock, orders, and the plugin framework.

Plugin authors import what they need from here: ``hookimpl`` to implement
hooks, ``Manifest`` to declare themselves, and the service modules.
"""
from .hookspecs import hookimpl
from .plugins import Manifest

__all__ = ["hookimpl", "Manifest"]
__version__ = "0.1.0"
