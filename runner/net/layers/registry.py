"""Caffe type name -> the layer class that builds it (Caffe's layer_factory)."""
from runner.net.layers import activation, convolution, loss

LAYERS = {layer_class.type_name: layer_class
          for family in (convolution, activation, loss) for layer_class in family.LAYERS}
