"""The bundles shipped with medseg, installed as the package ``medseg._bundles`` (data only).

This file makes the folder a regular package, so that an editable install maps it too; see
``medseg.bundle.locate.shipped_bundles_dir``.
"""
