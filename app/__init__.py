"""DoViT Studio's web app: pure view/chart/image functions plus thin gradio wiring.

Only the wiring imports gradio: ``app.ui`` (the page, launching), ``app.tabs`` (one module per tab),
``app.studio`` and ``app.page`` (the handlers), ``app.api``, ``app.errors`` and ``app.sharing``; every other
module takes numpy arrays / ``dovit.Trace`` and returns arrays, dicts or plotly figures, so it can be
tested without a browser.
"""
import os

# Before any module here imports gradio: no usage analytics, no version check (the app runs offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
