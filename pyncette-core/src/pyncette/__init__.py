__path__ = __import__("pkgutil").extend_path(__path__, __name__)
"""Pyncette: a reliable distributed scheduler for async Python with pluggable storage backends."""
