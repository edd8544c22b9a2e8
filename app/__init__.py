"""The I2P-MAE Explorer: a Gradio page over the ``i2pmae`` pipeline.

``handlers`` holds plain functions (testable without a browser), ``figures`` the plotly figures,
``resources`` the lazily loaded teacher, checkpoint and evaluation code, ``ui`` the layout.
"""
