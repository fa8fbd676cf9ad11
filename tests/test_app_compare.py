"""app.compare and app.tabs.compare: two ξ, two models or two policies side by side (handlers called
directly)."""
import cv2
import gradio as gr
import numpy as np
import pytest
from test_app_models import checkpoint

from app import compare
from app.models import ModelShelf
from app.studio import Studio
from app.tabs.compare import CompareHandlers
from dovit import Predictor


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    checkpoint(root / "a", 0.9)
    checkpoint(root / "b", 0.8, classes=3)
    uploads = tmp_path_factory.mktemp("uploads")
    default = Predictor.from_checkpoint(root / "a")
    studio = Studio(default, image_dirs=[uploads], models=ModelShelf.build(default, root / "a", root=root))
    path = uploads / "street.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    session = studio.on_image(str(path), studio.default_size_value, 0.9, 0.5, None).session
    return studio, CompareHandlers(studio), session


def run(handlers, session, mode, **kwargs):
    values = dict(xi_a=1.0, xi_b=0.3, model_a="a", model_b="b", policy_a="random", policy_b="confidence",
                  budget=0.5)
    values.update(kwargs)
    return handlers.on_compare(mode, *values.values(), 0.5, session)


def test_two_xi_side_by_side_with_their_costs(setup):
    studio, handlers, session = setup
    compared = run(handlers, session, "two ξ")
    masks, tokens = compared.masks, compared.tokens
    assert masks[0].shape == masks[1].shape == (64, 96, 3) and tokens[0].shape == (64, 96, 3)
    rows = [line for line in compared.table.splitlines() if line.startswith("| ξ")]
    assert rows[0].startswith("| ξ = 1 | ") and rows[1].startswith("| ξ = 0.3 | ") and "100.00%" in rows[0]
    dense, cheap = (float(row.split("|")[2].split()[0]) for row in rows)
    assert cheap <= dense


def test_two_models_and_two_policies(setup):
    studio, handlers, session = setup
    table = run(handlers, session, "two models").table
    assert "| a at ξ = 1 |" in table and "| b at ξ = 0.3 |" in table
    table = run(handlers, session, "two policies", budget=0.6).table
    assert "| random at 60% of dense FLOPs |" in table and "| confidence at 60% of dense FLOPs |" in table
    with pytest.raises(gr.Error, match="budget"):
        run(handlers, session, "two policies", budget=0)


def test_refusals(setup):
    _, handlers, session = setup
    with pytest.raises(gr.Error, match="Upload an image first"):
        run(handlers, None, "two ξ")
    with pytest.raises(gr.Error, match="unknown comparison"):
        run(handlers, session, "three ways")
    with pytest.raises(gr.Error, match="xi must be"):
        run(handlers, session, "two ξ", xi_b=3)


def test_table_names_both_sides():
    side = compare.Side("A", np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), 1.0, 2.0, 10.0,
                        0.95, (4, 2))
    text = compare.comparison_markdown(side, side)
    assert "| A | 1.00 (50% of dense) | 10.0 ms | 95.00% | 4 → 2 |" in text
