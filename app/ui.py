"""The page layout: components and events only; every computation lives in :mod:`app.handlers`.

``python app.py`` builds the page with :func:`build_demo` and serves it with :func:`launch_options`.
"""

from __future__ import annotations

import functools
import os

import gradio as gr
import torch

from i2pmae.io import SUPPORTED_EXTENSIONS

from . import handlers, texts
from .paths import ASSETS_DIR
from .resources import DEFAULT_TEACHER, teacher_status
from .shapes import MAX_MESH_FACES, MAX_POINTS, MAX_UPLOAD_MB, MIN_POINTS

HOST = "127.0.0.1"
DEFAULT_PORT = 7860
PORT_ENV = "GRADIO_SERVER_PORT"
QUEUE_SIZE = 64
CONCURRENCY = 2  # requests served at once per event: the two CPU cores
# Intra-op threads per request. With two requests at once on two cores, more threads only contend: on a
# busy 2-core machine one thread ran the teacher 10x faster than two (benchmarks/bench_app.py --threads).
TORCH_THREADS = 1
POINTS_STEP = 512
GALLERY_COLUMNS = 4
GALLERY_HEIGHT = 370  # px: three rows of thumbnails, the 12 bundled shapes
RENDER_COLUMNS = 5  # the five Open3D stills in one row
RENDER_HEIGHT = 190  # px: one row of thumbnails; a click enlarges one
SURFACE_HEIGHT = 320
PLOT_SCALE, NOTE_SCALE = 3, 1
TITLE = "I2P-MAE Explorer"
EVIDENCE_TITLE = "Evidence: does 2D-guided masking help here?"
DELETE_CACHE = (3600, 86400)  # (every s, older than s): Gradio deletes its cached files of this app
CSS = """
.how-it-works {font-size: 0.92em; background: var(--block-background-fill); padding: 0 10px;}
"""
# Greys out one choice of the teacher radio (the server refuses it anyway, with the reason).
DISABLED_TEACHER_CSS = ('#teacher label[data-testid="{name}-radio-label"] '
                        "{{opacity: 0.45; pointer-events: none;}}")


def page_css() -> str:
    """The page's style: note boxes, and unavailable teachers shown disabled."""
    disabled = [DISABLED_TEACHER_CSS.format(name=name) for name, reason in teacher_status().items() if reason]
    return "\n".join([CSS, *disabled])


def launch_options() -> dict:
    """Keyword arguments of ``demo.launch`` for a local, offline server.

    ``GRADIO_SERVER_NAME`` wins over the loopback default: Hugging Face Spaces set it to 0.0.0.0.
    """
    return {"server_name": os.environ.get("GRADIO_SERVER_NAME", HOST),
            "server_port": int(os.environ.get(PORT_ENV, DEFAULT_PORT)),
            "max_file_size": f"{MAX_UPLOAD_MB}mb", "allowed_paths": [str(ASSETS_DIR)], "css": page_css(),
            "footer_links": ["api"]}


def _note(text: str) -> gr.Markdown:
    """A "how it works" box."""
    return gr.Markdown(text, elem_classes="how-it-works")


def _panel(text: str) -> gr.Column:
    """A row holding a figure column (returned) and its "how it works" note."""
    with gr.Row(equal_height=False):
        column = gr.Column(scale=PLOT_SCALE)
        with gr.Column(scale=NOTE_SCALE, min_width=220):
            _note(text)
    return column


def build_demo() -> gr.Blocks:
    """The whole explorer as one ``gr.Blocks`` page, with its queue configured (sets torch's threads)."""
    torch.set_num_threads(TORCH_THREADS)
    teachers = teacher_status()
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(texts.INTRO)

        gr.Markdown("## 1. The shape")
        with gr.Row(equal_height=False):
            with gr.Column(scale=2, min_width=320):
                gallery = gr.Gallery(value=[(e.thumbnail, e.caption) for e in handlers.examples()],
                                     label="bundled shapes",
                                     columns=GALLERY_COLUMNS, height=GALLERY_HEIGHT, allow_preview=False,
                                     object_fit="contain", interactive=False, elem_id="gallery")
                shape_file = gr.File(label=f"…or upload a shape ({', '.join(SUPPORTED_EXTENSIONS)}; "
                                     f"up to {MAX_UPLOAD_MB} MB)", file_types=list(SUPPORTED_EXTENSIONS),
                                     elem_id="shape-file")
                with gr.Row():
                    num_points = gr.Slider(MIN_POINTS, MAX_POINTS, value=handlers.DEFAULT_POINTS,
                                           step=POINTS_STEP, label="points (N)")
                    seed = gr.Number(0, precision=0, minimum=0, label="sampling seed")
                teacher = gr.Radio(list(teachers), value=DEFAULT_TEACHER, label="2D teacher",
                                   info=handlers.teacher_note(teachers), elem_id="teacher")
                analyse = gr.Button("Analyse", variant="primary")
            with gr.Column(scale=3):
                summary = gr.Markdown("Pick a shape from the gallery or upload one.", elem_id="summary")
                with gr.Row():
                    cloud = gr.Plot(label="point cloud (drag to rotate)", elem_id="cloud")
                    mesh = gr.Model3D(label=f"mesh (mesh files up to {MAX_MESH_FACES:,} faces)", height=400,
                                      elem_id="mesh")
                _note(texts.INPUT)

        gr.Markdown("## 2. Depth views: what the 2D teacher sees")
        with _panel(texts.DEPTH):
            depth = gr.Plot(label="three depth images", elem_id="depth")

        gr.Markdown("## 3. 2D saliency and its back-projection to 3D tokens")
        with _panel(texts.SALIENCY):
            saliency_views = gr.Plot(label="teacher saliency per view", elem_id="saliency")
            token_saliency = gr.Plot(label="token saliency (level chosen below)", elem_id="token-saliency")

        gr.Markdown("## 4. Random vs 2D-guided masking")
        with gr.Row():
            level = gr.Radio(list(handlers.LEVEL_CHOICES), value=handlers.DEFAULT_LEVEL,
                             label="level (tokens)", elem_id="level")
            mask_ratio = gr.Slider(handlers.MIN_MASK_RATIO, handlers.MAX_MASK_RATIO,
                                   value=handlers.DEFAULT_MASK_RATIO, step=0.05,
                                   label="mask ratio", elem_id="mask-ratio")
            with gr.Column(min_width=260):
                preset = gr.Radio(list(handlers.TAU_PRESETS), value=handlers.STRONG_PRESET, label="preset",
                                  elem_id="tau-preset")
                log10_tau = gr.Slider(handlers.MIN_LOG10_TAU, handlers.MAX_LOG10_TAU,
                                      value=handlers.TAU_PRESETS[handlers.STRONG_PRESET], step=0.1,
                                      label="temperature: log₁₀ τ", info="0 → τ = 1, the paper's setting; "
                                      "−5 → τ = 0.00001 (almost greedy)", elem_id="tau")
            mask_seed = gr.Number(0, precision=0, minimum=0, label="mask seed")
        with _panel(texts.MASKS):
            masks = gr.Plot(label="visible vs masked tokens (one draw)", elem_id="masks")
            stats = gr.Markdown(elem_id="mask-stats")
        with _panel(texts.SAMPLER):
            visibility = gr.Plot(label="each token's chance of staying visible", elem_id="visibility")
            rank_chart = gr.Plot(label="chance of staying visible vs saliency rank", elem_id="rank-chart")
            guidance_numbers = gr.Markdown(elem_id="guidance-numbers")

        gr.Markdown("## 5. Reconstruction of the masked points")
        with _panel(texts.RECONSTRUCTION):
            reconstruction = gr.Plot(label="reconstruction under each mask (one draw)",
                                     elem_id="reconstruction")
            reconstruction_text = gr.Markdown(elem_id="reconstruction-text")
        with _panel(texts.SPREAD):
            boxes = gr.Plot(label="Chamfer-L2 over many mask draws", elem_id="chamfer-boxes")
            sweep = gr.Plot(label="saliency kept and Chamfer-L2 against τ", elem_id="tau-sweep")
        with _panel(texts.OPEN3D):
            stills = gr.Gallery(label="Open3D renders (fixed camera)", columns=RENDER_COLUMNS,
                                height=RENDER_HEIGHT, object_fit="contain", allow_preview=True,
                                interactive=False, elem_id="renders")
            render_note = gr.Markdown(elem_id="render-note")
            with gr.Row():
                surface_random = gr.Model3D(label="surface, random mask", height=SURFACE_HEIGHT,
                                            elem_id="surface-random")
                surface_guided = gr.Model3D(label="surface, 2D-guided mask", height=SURFACE_HEIGHT,
                                            elem_id="surface-guided")
            surface_downloads = gr.File(label="download the surfaces (PLY, GLB)", file_count="multiple",
                                        interactive=False, elem_id="surface-files")
            surface_text = gr.Markdown(elem_id="surface-text")
        with gr.Accordion(EVIDENCE_TITLE, open=True, elem_id="evidence"), _panel(texts.EVIDENCE):
            evidence_plot = gr.Plot(label="accuracy per seed, and guided − random paired by seed",
                                    elem_id="evidence-plot")
            evidence_text = gr.Markdown(elem_id="evidence-text")
            evidence_table = gr.Markdown(elem_id="evidence-table")

        gr.Markdown("## 6. Classification (ModelNet10)")
        with _panel(texts.CLASSIFY):
            classify_button = gr.Button("Classify this shape")
            classify_text = gr.Markdown(elem_id="classify-text")
            label = gr.Label(num_top_classes=5, label="class confidences", elem_id="classes")
            novelty_json = gr.JSON(label="novelty (higher score = more novel)", elem_id="novelty")

        gr.Markdown("## 7. Few-shot classification")
        with _panel(texts.FEW_SHOT):
            with gr.Row():
                classes = handlers.support_classes()
                fs_classes = gr.CheckboxGroup(classes, value=classes[:handlers.DEFAULT_WAYS],
                                              label="classes (N-way)", elem_id="fs-classes")
                with gr.Column():
                    fs_shots = gr.Slider(handlers.MIN_SHOTS, handlers.MAX_SHOTS, value=handlers.DEFAULT_SHOTS,
                                         step=1, label="shots per class (K)")
                    fs_seed = gr.Number(0, precision=0, minimum=0, label="episode seed")
            fs_uploads = gr.File(file_count="multiple", file_types=list(SUPPORTED_EXTENSIONS),
                                 label="optional: your own support shapes, named <class>_<number>.<ext>")
            fs_button = gr.Button("Run few-shot episode")
            fs_text = gr.Markdown(elem_id="fs-text")
            with gr.Row():
                fs_label = gr.Label(num_top_classes=5, label="prediction for the current shape", scale=1)
                fs_plot = gr.Plot(label="features, PCA to 2D", elem_id="fs-plot", scale=2)

        shape_inputs = [shape_file, num_points, seed, teacher]
        mask_inputs = [level, mask_ratio, log10_tau, mask_seed]
        explore_outputs = [summary, cloud, mesh, depth, saliency_views, token_saliency, masks, stats]
        mask_outputs = [token_saliency, masks, stats]
        reconstruct_inputs = shape_inputs + [mask_ratio, log10_tau, mask_seed]
        reconstruct_outputs = [reconstruction, reconstruction_text]
        render_inputs = shape_inputs + mask_inputs
        render_outputs = [stills, render_note]
        surface_outputs = [surface_random, surface_guided, surface_downloads, surface_text]
        classify_outputs = [label, classify_text, novelty_json]
        guidance_inputs = shape_inputs + [level, mask_ratio, log10_tau]
        guidance_outputs = [visibility, rank_chart, guidance_numbers]
        spread_inputs = shape_inputs + [mask_ratio, log10_tau]

        def endpoint(name: str | None) -> dict:
            return {"api_name": name} if name else {"api_visibility": "private"}

        def then_measure(event, named: bool = False):
            """After the one-draw panels: the sampler over many draws, then Chamfer-L2 over many masks, then
            the Open3D panel (surfaces and stills, each made in a bounded child process)."""
            (event.success(handlers.guidance_panels, guidance_inputs, guidance_outputs,
                           **endpoint(named and "guidance"))
             .success(handlers.chamfer_boxes, spread_inputs, boxes, **endpoint(named and "chamfer_spread"))
             .success(handlers.tau_sweep, spread_inputs, sweep, **endpoint(named and "tau_sweep"))
             .success(handlers.surface, reconstruct_inputs, surface_outputs, **endpoint(named and "surface"))
             .success(handlers.renders, render_inputs, render_outputs, **endpoint(named and "renders")))

        def run_explore(event, **kwargs):
            """Analysis panels first, then the reconstruction, the class confidences, the measurements and
            the Open3D panel."""
            then_measure(event(handlers.explore, shape_inputs + mask_inputs, explore_outputs, **kwargs)
                         .success(handlers.reconstruct, reconstruct_inputs, reconstruct_outputs,
                                  api_visibility="private")
                         .success(handlers.classify_panel, [shape_file], classify_outputs,
                                  api_visibility="private"))

        def run_remask(event, named: bool = False):
            """New mask settings: the mask panels and the reconstruction, then the measurements."""
            then_measure(event(handlers.remask, shape_inputs + mask_inputs, mask_outputs,
                               show_progress="minimal", trigger_mode="always_last",
                               **endpoint(named and "remask"))
                         .success(handlers.reconstruct, reconstruct_inputs, reconstruct_outputs,
                                  show_progress="minimal", trigger_mode="always_last",
                                  **endpoint(named and "reconstruct")), named=named)

        # Named endpoints first: gradio gives later events of the same function suffixed names.
        mask_moved = [level.change, mask_ratio.release, log10_tau.release, mask_seed.change]
        run_remask(functools.partial(gr.on, mask_moved), named=True)
        run_remask(preset.input(handlers.preset_log10_tau, preset, log10_tau, api_visibility="private").then)
        run_explore(analyse.click, api_name="explore")
        for trigger in (shape_file.upload, num_points.release, seed.submit, teacher.change):
            run_explore(trigger, api_visibility="private")
        run_explore(gallery.select(handlers.pick_example, None, shape_file, api_visibility="private").then,
                    api_visibility="private")
        shape_file.clear(handlers.cleared, None, explore_outputs + reconstruct_outputs + classify_outputs
                         + guidance_outputs + [boxes, sweep] + surface_outputs + render_outputs,
                         api_visibility="private")
        (classify_button.click(handlers.classify, [shape_file], label, api_name="classify")
         .success(handlers.novelty, [shape_file], novelty_json, api_name="novelty"))
        demo.load(handlers.warm_up, None, None, api_visibility="private", show_progress="hidden")
        # Static data, read on every page load so that a page opened later shows the newer record.
        demo.load(handlers.evidence_panel, None, [evidence_plot, evidence_text, evidence_table],
                  api_visibility="private", show_progress="hidden")
        gr.api(handlers.evidence_record, api_name="evidence")  # the record as JSON, not as panel outputs
        fs_button.click(handlers.few_shot, [fs_classes, fs_shots, fs_seed, fs_uploads, shape_file],
                        [fs_text, fs_label, fs_plot], api_name="few_shot")
    return demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
