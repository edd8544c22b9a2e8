"""The I2P-MAE Explorer: a Gradio page over the ``i2pmae`` pipeline.

``ui`` lays the page out and wires events to ``handlers``, plain functions testable without a browser.
They use ``shapes`` (reading and analysing an upload once, in bounded caches from ``cache``),
``reconstruction`` and ``evaluation`` (classification and few-shot on the checkpoint's features),
``figures`` (every plotly figure), ``resources`` (the lazily loaded teacher and checkpoint),
``support_set`` (the bundled few-shot shapes), ``evidence`` (the seeded ablation of docs/ablation.json),
``paths`` and ``texts`` (the words on the page).
"""
