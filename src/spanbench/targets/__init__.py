"""Databases under test. ``dsn.py`` decides which module serves a DSN."""
