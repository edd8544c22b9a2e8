"""I2P-MAE in pure PyTorch: image-to-point masked autoencoders for 3D point clouds.

``import i2pmae`` loads nothing but this file; its modules need torch, numpy and the pinned libraries of
``pyproject.toml`` (timm, scipy, safetensors, ...), never gradio: the explorer lives in ``app/``.
The data flow and the module of each step are drawn in the README ("Architecture").
"""

__version__ = "0.1.0"
