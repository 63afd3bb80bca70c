"""The deployment latency report (tools/analysis/deploy_benchmark.py): its
table, plot and JSON round trip. Timing itself runs in the GPU suite's
dry run (tests/test_analysis/test_gpu_suite.py)."""
from vovdet.analysis.deploy_benchmark import (EAGER, FORM, ORT,
                                              DeployBenchmark, DeployTiming,
                                              format_markdown,
                                              load_deploy_benchmark,
                                              write_deploy_benchmark)


def timing(label, eager, form, ort):
    return DeployTiming(
        label=label,
        shape=(64, 64),
        latencies_ms={EAGER: [eager], FORM: [form], ORT: [ort]},
        medians_ms={EAGER: eager, FORM: form, ORT: ort},
        speed_ups={FORM: eager / form, ORT: eager / ort},
        parity={ORT: '3 vs 3 detections, 0 unmatched'},
        detections=3,
        inference_form='inference form: no branches to fuse',
        not_run={'CUDAExecutionProvider': 'not available'})


def test_report_round_trips_and_lists_every_variant(tmp_path):
    bench = DeployBenchmark(
        device='cpu', threads=1, warmup=0, rounds=1,
        versions=dict(torch='2.13.0'),
        models=[timing('RefineDet tiny', 100.0, 80.0, 40.0),
                timing('Mask R-CNN tiny', 300.0, 300.0, 200.0)])
    paths = write_deploy_benchmark(bench, str(tmp_path), 'deploy')
    assert [p.rsplit('.', 1)[1] for p in paths] == ['json', 'md', 'png']
    assert load_deploy_benchmark(paths[0]) == bench
    table = format_markdown(bench)
    assert ('| RefineDet tiny | 64x64 | 100.0 | 80.0 | 40.0 | 1.25x | 2.50x |'
            in table)
    assert '| Mask R-CNN tiny | 64x64 | 300.0 | 300.0 | 200.0 | 1.00x | ' \
        '1.50x |' in table
    assert '- RefineDet tiny, ONNX Runtime: 3 vs 3 detections' in table
