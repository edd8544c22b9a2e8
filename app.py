"""``python app.py``: the I2P-MAE Explorer on http://127.0.0.1:7860 (``GRADIO_SERVER_PORT`` to change it)."""

from app.ui import build_demo, launch_options

if __name__ == "__main__":
    build_demo().launch(**launch_options())
