"""Evaluation: the YouTube-VIS video protocol (``ytvis_eval``) and per-frame COCO mAP (``coco_frame``)."""
