"""Exports of labelled recordings to robot-learning data set formats (``egopress export-lerobot``)."""
