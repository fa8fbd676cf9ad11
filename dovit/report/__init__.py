"""Helpers of the data-set report (``python -m dovit.analyze``) and the video analysis (``dovit.viz.video``):
token-grid geometry (``tokens``), pure plotly figures (``figures``) and the self-contained HTML (``html``).
Nothing here imports gradio."""
