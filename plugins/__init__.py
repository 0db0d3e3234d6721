"""The bundled plugins; each subpackage is one plugin, found through its entry point."""
