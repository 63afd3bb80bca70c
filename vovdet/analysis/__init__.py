"""Model analysis: complexity (params, FLOPs, MAC, activation memory)."""
from .complexity import (ComplexityResult, LayerComplexity,
                         build_model_from_config, conv_mac, detector_forward,
                         format_layer_table, format_summary, get_complexity,
                         get_config_complexity, mac_lower_bound, mac_table)

__all__ = [
    'ComplexityResult', 'LayerComplexity', 'build_model_from_config',
    'conv_mac', 'detector_forward', 'format_layer_table', 'format_summary',
    'get_complexity', 'get_config_complexity', 'mac_lower_bound', 'mac_table'
]
