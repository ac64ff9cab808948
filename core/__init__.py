"""TorchLab core: all PyTorch logic (data, nets, training, checkpoints, prediction).

This package never imports streamlit; the pages in ``pages/`` are thin scripts over it.
"""
