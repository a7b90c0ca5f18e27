"""Load generator for the interview server: ``python -m bench --sockets N``.

Not part of the test suite; see bench/README.md.
"""
