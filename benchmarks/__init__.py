"""Measurement scripts for docs/benchmarks.md. Run them from the checkout's root as modules,
``python -m benchmarks.app_handler``: they import the dovit and app packages (installed, or the
checkout's own), never by editing sys.path."""
