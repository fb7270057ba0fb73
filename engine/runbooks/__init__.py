"""Runbooks: the typed model, the loader and its schema, templating, matchers, and the set
in force.
"""
