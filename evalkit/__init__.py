"""evalkit: train DPO/DPOP checkpoints and score them the way the Smaug paper did."""

__version__ = "0.1.0"
