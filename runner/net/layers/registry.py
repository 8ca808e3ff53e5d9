"""Caffe type name -> the layer class that builds it (Caffe's layer_factory)."""
from runner.net.layers import (activation, convolution, inner_product, loss, normalization,
                               pooling, reshaping, routing)

FAMILIES = (convolution, pooling, inner_product, activation, normalization, routing, reshaping,
            loss)
LAYERS = {layer_class.type_name: layer_class
          for family in FAMILIES for layer_class in family.LAYERS}
