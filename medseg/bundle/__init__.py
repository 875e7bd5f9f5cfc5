"""Bundles by contract: where they live (``locate``), what is there (``catalog``), and the parts
of a bundle that inference needs.

Nothing is imported here, so that ``import medseg.bundle.locate`` stays light: import the module
you need.
"""
