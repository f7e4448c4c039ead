"""Network building blocks shared by the models."""

from mmint.nn.mlp import MLP, make_activation

__all__ = ["MLP", "make_activation"]
