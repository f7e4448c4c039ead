"""Adapters of the real scvi-tools models (MULTIVI, totalVI, scANVI) behind mmint's interface.

scvi-tools is an optional extra (``pip install 'mmint[scvi]'``); the adapters import it only
when they are fitted, and say which extra to install when it is missing.
"""
