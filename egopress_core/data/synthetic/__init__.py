"""Synthetic egocentric RGB-D hand-pressure data (`egopress synth`)."""
