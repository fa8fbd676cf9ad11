"""DoViT Studio's web app: pure view/chart/image functions plus thin gradio wiring.

Only ``app.ui`` (layout, events, launching) and ``app.studio`` (the handlers) import gradio; every other
module takes numpy arrays / ``dovit.Trace`` and returns arrays, dicts or plotly figures, so it can be
tested without a browser.
"""
import os

# Before any module here imports gradio: no usage analytics, no version check (the app runs offline).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
