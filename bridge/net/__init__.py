"""Torch modules with the scikit-learn estimator API: NeuralNet and its classifier/regressor variants."""

from bridge.net.classifier import NeuralNetBinaryClassifier, NeuralNetClassifier
from bridge.net.net import NeuralNet
from bridge.net.regressor import NeuralNetRegressor

__all__ = ["NeuralNet", "NeuralNetBinaryClassifier", "NeuralNetClassifier", "NeuralNetRegressor"]
