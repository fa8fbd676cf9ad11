"""DoViT Studio's web app: pure view/chart/image functions plus thin gradio wiring in ``app.ui``.

Only ``app.ui`` imports gradio; every other module takes numpy arrays / ``dovit.Trace`` and returns
arrays, dicts or plotly figures, so it can be tested without a browser.
"""
