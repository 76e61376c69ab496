"""The bundled plugins (payments, notifications, shipping).

Each is registered through the ``backoffice.plugins`` entry-point group exactly like a
third-party plugin, so the path a stranger's plugin takes is the path the bundled ones prove.
"""
