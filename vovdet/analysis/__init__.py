"""Model analysis: complexity (params, FLOPs, MAC, activation memory),
benchmarks (latency, memory, GFLOP/s, energy), paper tables and
dense-connection heatmaps."""
from .benchmark import (BenchmarkResult, BenchmarkSettings, ModelSpec,
                        benchmark_model, benchmark_spec, run_isolated)
from .complexity import (ComplexityResult, LayerComplexity,
                         build_model_from_config, conv_mac, detector_forward,
                         format_layer_table, format_summary, get_complexity,
                         get_config_complexity, mac_lower_bound, mac_table)
from .heatmap import ConnectionMap, connection_maps, save_heatmaps
from .paper_table import measure_peak, run_table, write_table

__all__ = [
    'ComplexityResult', 'LayerComplexity', 'build_model_from_config',
    'conv_mac', 'detector_forward', 'format_layer_table', 'format_summary',
    'get_complexity', 'get_config_complexity', 'mac_lower_bound', 'mac_table',
    'BenchmarkResult', 'BenchmarkSettings', 'ModelSpec', 'benchmark_model',
    'benchmark_spec', 'run_isolated', 'ConnectionMap', 'connection_maps',
    'save_heatmaps', 'measure_peak', 'run_table', 'write_table'
]
