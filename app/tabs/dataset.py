"""The "Data set" tab: ``python -m dovit.analyze``'s report on a bounded folder, in the app.

The images are a frame folder the operator allowed (the same list as the Video tab; a CamVid split folder
with its ``<split>annot`` labels beside it is read with those labels) or uploaded images, at most
``ServingLimits.report_max_images``. Each image is one turn on the model as background work
(``dovit.report.analysis.analyse_image``: the ξ grid's forwards), so the page and /predict go first between
images and Stop cancels between them; the figures, thumbnails and files are the CLI's
(``dovit.report``), the report.html/json written to a job folder for download.
"""
from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic

import gradio as gr

from dovit import ModelConfig
from dovit.core.stopwatch import Stopwatch
from dovit.report.analysis import (
    DEFAULT_XI_GRID,
    Frame,
    ReportAccumulator,
    analyse_image,
    open_input,
    report_line,
)
from dovit.report.html import headline_table, report_figures, write_report
from dovit.viz.video import count_frames

from ..limits import new_run_folder
from ..slots import Slots, T, connect
from ..studio import Studio, user_error

REPORT_QUEUE = "report"
FIGURE_SLOTS = 6  # report_figures gives 4 without labels, 6 with
CAMVID_CLASSES = 11


def label_layout(folder: Path, num_classes: int) -> str | None:
    """'camvid' when ``folder`` is a CamVid split folder (a sibling ``<name>annot`` folder holds its labels)
    and the checkpoint predicts CamVid's 11 classes; None (no labels) otherwise."""
    return ("camvid" if num_classes == CAMVID_CLASSES and (folder.parent / f"{folder.name}annot").is_dir()
            else None)


@dataclass
class ReportSlots(Slots, Generic[T]):
    """A report: its headline table, the notices, the cheapest and most expensive images, its files
    (report.html and report.json) and its figures (``FIGURE_SLOTS``; None past the report's own)."""

    headline: T
    notices: T
    gallery: T
    files: T
    figures: list[T]


@dataclass
class DatasetViews:
    """The Data set tab's components: what to analyse, at which ξ, Run and Stop, and the report."""

    folder_in: gr.Dropdown
    uploads: gr.File
    xi: gr.Slider
    run: gr.Button
    stop: gr.Button
    report: ReportSlots[gr.components.Component]


def layout(tab: DatasetTab) -> DatasetViews:
    limits = tab.limits
    with gr.Tab("Data set", id="dataset"):
        gr.Markdown(
            "The report of `python -m dovit.analyze` on a folder: GFLOPs per image, kept fraction per "
            "decision layer, halting depth per class and, with labels (a CamVid split with its `annot` "
            "folder), aux-head calibration, the error of stopped tokens and mIoU; agreement with dense and "
            f"GFLOPs over ξ {', '.join(f'{v:g}' for v in DEFAULT_XI_GRID)}. At most "
            f"{limits.report_max_images} images; each costs a forward per ξ of the grid.")
        with gr.Row():
            folder_in = gr.Dropdown(list(tab.folders), value=None, label="A folder on the server",
                                    elem_id="dataset-folder", scale=2)
            uploads = gr.File(label=f"…or upload images (at most {limits.report_max_images})",
                              file_count="multiple",
                              file_types=["image"], type="filepath", elem_id="dataset-uploads", scale=2)
            xi = gr.Slider(0.0, 1.0, value=tab.studio.config.default_xi, step=0.005, label="report ξ",
                           elem_id="dataset-xi", scale=1)
        with gr.Row():
            run = gr.Button("Run the report", elem_id="dataset-run", scale=3)
            stop = gr.Button("Stop", elem_id="dataset-stop", scale=1)
        notices = gr.Markdown(elem_id="dataset-notices")
        headline = gr.HTML(elem_id="dataset-headline")
        files = gr.File(label="report.html (self-contained) and report.json", file_count="multiple",
                        interactive=False, elem_id="dataset-files")
        gallery = gr.Gallery(label="Cheapest and most expensive images (image | halting depth)", columns=4,
                             height=260, elem_id="dataset-gallery")
        figures = [gr.Plot(elem_id=f"dataset-figure-{index + 1}") for index in range(FIGURE_SLOTS)]
    return DatasetViews(folder_in, uploads, xi, run, stop, ReportSlots(headline, notices, gallery, files,
                                                                       figures))


class DatasetTab:
    """The Data set tab's handlers, bound to a Studio; folders: {label: folder} offered in the dropdown."""

    def __init__(self, studio: Studio, folders: dict[str, Path], work_root: str | Path | None = None) -> None:
        self.studio = studio
        self.limits = studio.limits
        self.folders = dict(folders)
        self.work_root = Path(work_root or Path(tempfile.gettempdir()) / "dovit-report")

    def frames(self, folder_label: str | None, uploads: Sequence[str] | None,
               config: ModelConfig | None = None) -> tuple[Iterator[Frame], int, str, bool, list[str]]:
        """(frames, how many, what is read, labelled?, notices) for a chosen folder or the uploaded images;
        ``config``: the model's (its classes say whether CamVid labels apply; default: the studio's model)."""
        cap = self.limits.report_max_images
        config = config or self.studio.config
        if uploads:
            notices = [f"Only the first {cap} of {len(uploads)} images are "
                       "analysed."] if len(uploads) > cap else []
            paths = list(uploads)[:cap]

            def decoded() -> Iterator[Frame]:
                for index, path in enumerate(paths):
                    yield Frame(Path(path).stem, self.studio.user_image(path).rgb, None, index)
            return decoded(), len(paths), f"{len(paths)} uploaded images", False, notices
        if folder_label not in self.folders:
            raise user_error("Choose a folder from the list or upload images.")
        folder = self.folders[folder_label]
        layout = label_layout(folder, config.num_classes)
        try:
            frames, total, _ = open_input(folder, None, layout, config.class_names, max_images=cap)
        except (ValueError, FileNotFoundError) as error:
            raise user_error(str(error)) from None
        available = count_frames(folder)
        notices = ([f"Only the first {cap} of {available} images are analysed."] if available
                   and available > cap else [])
        what = folder_label.rsplit(" (", 1)[0] + (" with its labels" if layout else " (no labels)")
        return frames, total or 0, what, layout is not None, notices

    def on_run(self, folder_label: str | None, uploads: list[str] | None, xi: float, model: str | None = None,
               runtime: str | None = None, request: gr.Request = None,
               progress=gr.Progress()) -> Iterator[ReportSlots]:
        """Analyse the chosen images with the picked ``model`` on ``runtime`` (picker labels; None: the
        default model on PyTorch) with a progress bar, then show the report and offer its files."""
        with self.studio.finished(request, "report"):
            xi = self.studio.user_xi(xi)
            predictor = self.studio.picked(model, runtime)
            frames, total, what, labelled, notices = self.frames(folder_label, uploads, predictor.config)
            accumulator = ReportAccumulator(predictor.config.class_names, predictor.model.decision_layers, xi,
                                            DEFAULT_XI_GRID, labelled)
            progress((0, total), desc=what, unit="images")
            start = Stopwatch()
            try:
                for frame in frames:
                    with self.studio.model_call(background=True):
                        result = analyse_image(predictor, frame.image, frame.label, xi, accumulator.xi_grid,
                                               frame.name, frame.index)
                    accumulator.add(result, frame.image)
                    progress((len(accumulator.records), total), desc=what, unit="images")
                    yield ReportSlots.filled(gr.skip())  # a point where gradio can cancel the report
            except ValueError as error:
                raise user_error(str(error)) from None
            if not accumulator.records:
                raise user_error("No images to analyse.")
            summary = accumulator.summary()
            summary.update(input=what, checkpoint=self.studio.picked_name(model, runtime),
                           labels="from the layout" if labelled else None, seconds=start.seconds())
            thumbnails = accumulator.ranked_thumbnails()
            json_path, html_path = write_report(new_run_folder(self.work_root), summary, thumbnails)
            figures = [figure for _, figure in report_figures(summary)]
            figures += [None] * (FIGURE_SLOTS - len(figures))
            gallery = [(thumb, f"{kind}: {name}, {gflops:.2f} GFLOPs") for kind, key in
                       (("cheapest", "cheapest"), ("most expensive", "most_expensive"))
                       for name, gflops, thumb in thumbnails[key]]
            line = report_line(summary)
            yield ReportSlots(headline_table(summary), " · ".join([line, *notices]), gallery,
                              [str(html_path), str(json_path)], figures)

    def on_stop(self, request: gr.Request = None) -> str:
        self.studio.release(request, "report")
        return "Stopped."


def wire(tab: DatasetTab, views: DatasetViews, studio: Studio, pickers: list) -> None:
    event = connect(views.run.click, tab.on_run, [views.folder_in, views.uploads, views.xi, *pickers],
                    views.report, concurrency_id=REPORT_QUEUE, concurrency_limit=1, api_visibility="private",
                    validator=studio.admit("report"))
    views.stop.click(tab.on_stop, None, views.report.notices, cancels=[event], api_visibility="private")


def build(studio: Studio, folders: dict[str, Path], work_root: str | Path | None = None,
          pickers: Sequence[gr.components.Component] = ()) -> DatasetTab:
    """The Data set tab (call inside ``gr.Tabs``); returns the handlers. pickers: the page's Model and Runtime
    dropdowns, whose choice the report runs (none: the default model on PyTorch)."""
    tab = DatasetTab(studio, folders, work_root)
    wire(tab, layout(tab), studio, list(pickers))
    return tab
