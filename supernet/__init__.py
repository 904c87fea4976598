"""The weight-sharing supernet: elastic ops that slice shared weights, super blocks, the supernet."""

from supernet.elastic import (
    ELASTIC_OPS,
    ElasticAttention,
    ElasticFeedForward,
    ElasticLinear,
    ElasticOp,
    ElasticSepConv,
    elastic_op,
)
from supernet.supernet import SuperBlock, SuperLayer, Supernet, norm_key, padding_masks

__all__ = ["ELASTIC_OPS", "ElasticAttention", "ElasticFeedForward", "ElasticLinear", "ElasticOp", "ElasticSepConv",
           "SuperBlock", "SuperLayer", "Supernet", "elastic_op", "norm_key", "padding_masks"]
