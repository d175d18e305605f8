"""Tests of bridge.sklearn: from_sklearn parity, custom converters, inputs and gradients."""
