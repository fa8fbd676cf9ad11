"""DoViT Studio: ``python app.py`` serves the web app on http://127.0.0.1:7860 (no network needed).

The flags and the launch live in ``app/cli.py`` (also installed as the ``dovit-studio`` command).
"""
from app.cli import main, parse_args  # noqa: F401  (parse_args re-exported for callers of app.py)

if __name__ == "__main__":
    main()
