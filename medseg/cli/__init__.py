"""The medseg command line."""
