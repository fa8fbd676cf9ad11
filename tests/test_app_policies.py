"""The Policies tab without a browser: its images and table (``app.policy_views``) and its handlers on a
tiny model (every policy runs, progress, refusals, the time budget, the inspector's view sizes)."""
import cv2
import gradio as gr
import numpy as np
import pytest

from app import policy_views
from app.studio import Studio
from app.tabs.inspector import TokenInspector
from app.tabs.policies import PolicyHandlers
from app.ui import build_demo
from dovit import Predictor
from dovit.core.policies import POLICIES, PolicyResult
from dovit.core.token_grid import token_index_map
from dovit.viz import drawing

PATCH = 16


def fake_result(name: str, grid=(4, 6), size=(64, 96), agreement=0.9, gflops=1.0) -> PolicyResult:
    rng = np.random.default_rng(len(name))
    return PolicyResult(name=name, mask=rng.integers(0, 5, size), halting_depth=rng.integers(1, 5, grid),
                        gflops=gflops, dense_gflops=2.0, budget_gflops=1.0, latency_ms=12.3,
                        agreement=agreement,
                        parameter=0.9, note="a note", kept_tokens=(24, 12, 6, 3))


def test_mask_and_stop_map_views_at_their_sizes():
    image = np.full((64, 96, 3), 128, np.uint8)
    colors = [[i * 40, 0, 0] for i in range(5)]
    assert policy_views.mask_view(fake_result("confidence"), image, colors).shape == (64, 96, 3)
    assert policy_views.mask_view(fake_result("random", size=(32, 48)), image, colors).shape == (32, 48, 3)
    # the model saw a 48 x 80 working image (a 3 x 5 grid): the stop map is drawn at the image's own size
    topk = fake_result("topk", grid=(3, 5))
    stop_map = policy_views.stop_map_view(topk, image, (48, 80), PATCH, 4)
    assert stop_map.shape == (64, 96, 3) and stop_map.dtype == np.uint8
    index = token_index_map((64, 96), (48, 80), (3, 5), PATCH)
    colours = drawing.depth_colors(4)[topk.halting_depth.ravel()[index] - 1].astype(int)
    inside = (np.diff(index, axis=0, prepend=-1) == 0) & (np.diff(index, axis=1, prepend=-1) == 0)
    expected = (0.35 * 128 + 0.65 * colours[inside]).round()  # blended at opacity 0.65 over grey 128
    assert np.abs(stop_map[inside].astype(int) - expected).max() <= 1  # each token's colour on its pixels
    # each token is one colour block (up to the grid lines): two tokens of different depth differ
    result = fake_result("shallow")
    result.halting_depth[:] = 1
    result.halting_depth[0, 0] = 4
    drawn = policy_views.stop_map_view(result, image, (64, 96), PATCH, 4)
    assert (drawn[8, 8] != drawn[8, 24]).any()


def test_table_names_every_policy_with_budget_agreement_and_latency():
    results = [fake_result(name, agreement=0.9 + i / 100, gflops=1.0 + i / 100)
               for i, name in enumerate(POLICIES)]
    text = policy_views.table_markdown(policy_views.PolicyRun(0.5, results, 80.0))
    assert ("Budget 0.5" in text and "1.00 GFLOPs" in text and "6/6 policies" in text
            and "dense forward 80 ms" in text)
    for name in POLICIES:
        assert f"| **{name}** |" in text
    assert "1.05 (105%)" in text and "95.00%" in text and "12 ms" in text and "24 → 12 → 6 → 3" in text
    assert "oracle aside: **shallow**" in text  # the best agreement among the deployable ones
    assert policy_views.table_markdown(policy_views.PolicyRun(0.5, [], 80.0)) == ""
    assert policy_views.caption(results[0]) == (
        "confidence · 90.0% agree with dense · 1.00 of 1.00 GFLOPs (100%) · 12 ms")


# ------------------------------------------------------------------ handlers on a tiny model
@pytest.fixture(scope="module")
def studio(tiny_model, tmp_path_factory):
    uploads = tmp_path_factory.mktemp("uploads")
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (48, 72, 3), dtype=np.uint8)  # the checkpoint's 2:3: working size 64 x 96
    image[:24] = (200, 220, 250)
    cv2.imwrite(str(uploads / "street.png"), image)
    studio = Studio(Predictor(tiny_model), image_dirs=[uploads])
    studio.street = str(uploads / "street.png")
    return studio


@pytest.fixture
def session(studio):
    return studio.on_image(studio.street, "64x96", 0.5, 0.5, None).session


def run_all(handlers, budget, session, steps=None):
    progress = (lambda value, desc=None: steps.append((value, desc))) if steps is not None else (lambda *a,
                                                                                                 **k: None)
    return list(handlers.on_run_policies(budget, session, progress=progress))


def test_run_shows_every_policy_as_it_finishes_and_keeps_the_run(studio, session):
    handlers, steps = PolicyHandlers(studio), []
    outputs = run_all(handlers, 0.5, session, steps)
    n = len(POLICIES)
    assert len(outputs) == n + 2  # the dense forward, one per policy (cancellation points), the session
    assert steps[0][0] == (0, n + 1) and steps[-1] == ((n, n + 1), "policy shallow")
    for index, values in enumerate(outputs[1:-1]):
        results = values.results
        assert values.session == gr.skip() and len(results.masks) == len(results.stop_maps) == n
        assert f"{index + 1}/{n} policies" in results.table
        mask, stop_map = results.masks[index], results.stop_maps[index]
        assert mask["value"].shape == (64, 96, 3) and POLICIES[index] in mask["label"]
        assert "agree with dense" in mask["label"] and "GFLOPs" in mask["label"]
        assert stop_map["value"].shape == (64, 96, 3) and "kept" in stop_map["label"]
        others = [v for i, v in enumerate(results.masks + results.stop_maps) if i not in (index, n + index)]
        assert all(v == gr.skip() for v in others)
    assert outputs[-1].session is session and [r.name for r in session.policies.results] == list(POLICIES)
    for result in session.policies.results:
        assert 0.0 <= result.agreement <= 1.0 and result.latency_ms > 0
        if result.name != "shallow" and not result.note.count("misses the budget"):
            assert abs(result.gflops / result.budget_gflops - 1) <= 0.02
    sizes = [view(session) for view in handlers.views()]
    assert sizes == [(64, 96)] * (2 * n)


def test_policies_run_at_the_sessions_working_size(studio):
    session = studio.on_image(studio.street, "32x48", 0.5, 0.5, None).session
    assert session.size == (32, 48) != tuple(studio.config.input_size)
    handlers = PolicyHandlers(studio)
    last = run_all(handlers, 0.5, session)[-2].results
    # drawn at the photo's display size, whatever the working size
    shown = session.display.shape[:2]
    assert last.masks[-1]["value"].shape[:2] == last.stop_maps[-1]["value"].shape[:2] == shown
    assert all(r.halting_depth.shape == (32 // studio.patch,
                                         48 // studio.patch) for r in session.policies.results)
    assert [view(session) for view in handlers.views()] == [shown] * (2 * len(POLICIES))


def test_the_inspector_names_each_policys_stop_group(studio, session):
    run_all(PolicyHandlers(studio), 0.5, session)
    text = TokenInspector(studio).panel(session, 1, 2).text
    assert "Stopped after, under the Policies tab's 0.5 budget" in text
    for result in session.policies.results:
        assert f"{result.name} B{int(result.halting_depth[1, 2])}" in text


@pytest.mark.parametrize("budget", [0.0, 1.5, float("nan"), "0.5", True])
def test_bad_budgets_are_clear_errors(studio, session, budget):
    with pytest.raises(gr.Error, match="budget must be a fraction of the dense GFLOPs"):
        run_all(PolicyHandlers(studio), budget, session)


def test_no_image_is_a_clear_error_and_clearing_empties_the_tab(studio):
    handlers = PolicyHandlers(studio)
    with pytest.raises(gr.Error, match="Upload an image first"):
        run_all(handlers, 0.5, None)
    cleared = handlers.on_clear_policies()
    assert cleared.table == "" and len(cleared.masks) == len(cleared.stop_maps) == len(POLICIES)
    assert all(update["value"] is None for update in cleared.masks + cleared.stop_maps)


def test_a_run_past_the_time_budget_stops_with_what_it_has(studio, session, monkeypatch):
    monkeypatch.setattr(studio, "limits", type(studio.limits)(sweep_budget_s=0.0))
    warnings = []
    monkeypatch.setattr(gr, "Warning", warnings.append)
    outputs = run_all(PolicyHandlers(studio), 0.5, session)
    assert len(session.policies.results) == 1 and "1/6 policies" in outputs[-2].results.table
    assert "stopped after 0 s with 1 of 6" in warnings[0]


def test_build_demo_has_a_policies_tab_wired_in_the_sweep_queue(tiny_model):
    app = build_demo(Predictor(tiny_model))
    ids = {fn.name: index for index, fn in app.blocks.fns.items()}
    run = app.blocks.fns[ids["on_run_policies"]]
    assert run.concurrency_id == "sweep" and run.validator is not None and run.api_visibility == "private"
    cancellers = [fn for fn in app.blocks.fns.values() if fn.is_cancel_function and run._id in fn.cancels]
    assert len(cancellers) == 5  # Stop, a new image, a new working size, a new model, a new runtime
