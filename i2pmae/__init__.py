"""I2P-MAE in pure PyTorch: image-to-point masked autoencoders for 3D point clouds.

The package imports only torch and numpy at top level; the Gradio explorer lives in ``app/``.
"""

__version__ = "0.1.0"
