"""VPP Studio core: Qt-free library for video instance segmentation with Video Patch Pruning."""

__version__ = "0.1.0"
