"""The harness: the program that runs inside the code sandbox (see ``__main__``).

This folder is run as a script (``python -I <folder>``), never imported as part of primekit: its
modules are standard library only and import one another as top-level modules. It is a package
only so that it ships with primekit.
"""
