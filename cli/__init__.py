"""The ``spakinect-pipeline`` command: wiring above every component, imported by none of them.

:mod:`cli.main` parses the command line and starts the ingress, a worker or
a one-off task; the components themselves know nothing of it.
"""
