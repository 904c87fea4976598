"""The weight-sharing supernet: elastic ops that slice shared weights, super blocks, the supernet."""

from supernet.elastic import ElasticAttention, ElasticFeedForward, ElasticLinear, ElasticSepConv
from supernet.supernet import SuperBlock, SuperLayer, Supernet, padding_masks

__all__ = ["ElasticAttention", "ElasticFeedForward", "ElasticLinear", "ElasticSepConv", "SuperBlock", "SuperLayer",
           "Supernet", "padding_masks"]
