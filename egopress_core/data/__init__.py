"""Data: the frame record both sources produce, the synthetic generator, the EgoPressure
reader, and clip windows for training and evaluation."""
