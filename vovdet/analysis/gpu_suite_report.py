"""What the GPU suite (:mod:`vovdet.analysis.gpu_suite`) reports: the
machine and software stack it ran on, the one-screen summary, the combined
markdown report and its bar plots."""
import importlib.metadata
import os
import os.path as osp
import platform
from typing import Any, Dict, List

import torch

from vovdet.utils.mmcv_ops import compiled_ops_importable, mmcv_ops_backend

from .benchmark import device_name

# mmcv built without ops is the distribution mmcv-lite
PACKAGES = ('torch', 'torchvision', 'mmcv', 'mmcv-lite', 'mmengine', 'mmdet',
            'numpy', 'timm', 'onnxruntime', 'nvidia-ml-py', 'matplotlib')


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return 'absent'


def environment(device: str) -> Dict[str, Any]:
    """The device, package versions and which ``mmcv.ops`` is in use.

    Args:
        device (str): The suite's device.

    Returns:
        dict: ``device_name``, ``python``, ``cpu_count``, ``versions``,
        ``mmcv_ops`` (``'mmcv'`` compiled ops or ``'torchvision'``
        stand-in, with why the compiled ones are not used), ``energy``
        (whether NVML can be imported) and the TF32 switches, which change
        what an fp32 GEMM or conv peak means on NVIDIA GPUs.
    """
    dev = torch.device(device)
    compiled, why_not = compiled_ops_importable()
    backend = mmcv_ops_backend()
    ops = backend if compiled or backend != 'mmcv' else \
        f'mmcv (compiled ops missing: {why_not})'
    if backend == 'torchvision':
        ops += (' stand-in' if compiled else
                f' stand-in (compiled ops missing: {why_not})')
    env = dict(
        device_name=device_name(dev),
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        versions={p: _version(p) for p in PACKAGES},
        mmcv_ops=ops,
        tf32=dict(matmul=torch.backends.cuda.matmul.allow_tf32,
                  cudnn=torch.backends.cudnn.allow_tf32))
    try:
        import pynvml  # noqa: F401
        env['energy'] = 'NVML importable' if dev.type == 'cuda' else \
            'RAPL on the CPU (if readable)'
    except ImportError as err:
        env['energy'] = f'pynvml not importable ({err})'
    return env


def format_summary(suite: Dict[str, Any]) -> str:
    """The one-screen summary: the stack, then every step's outcome with
    its key figures or the reason it did not run.

    Args:
        suite (dict): The content of ``suite.json``.

    Returns:
        str: Plain text, one step per block.
    """
    env, budget = suite['environment'], suite['budget']
    mode = 'DRY RUN (CPU, tiny shapes, 1 repeat)' if suite['dry_run'] else \
        'full sizes'
    lines = [
        f"GPU suite: {mode} on {env['device_name']}",
        f"torch {env['versions']['torch']}, mmdet "
        f"{env['versions']['mmdet']}, mmcv.ops: {env['mmcv_ops']}",
        f"energy: {env['energy']}; wall {budget['elapsed_s']:.0f} s of "
        f"{budget['total_s']:.0f} s (slowdown vs estimates "
        f"{budget['slowdown']:.2f})",
    ]
    for step in suite['steps']:
        head = f"{step['name']}: {step['status']}"
        if step['status'] == 'done':
            head += f" ({step['seconds']:.0f} s)"
        else:
            head += f" ({step['reason']})"
        lines.append(head)
        lines += [f'    {line}' for line in step['summary']]
    return '\n'.join(lines) + '\n'


def write_report(suite: Dict[str, Any], summary: str,
                 out_dir: str) -> List[str]:
    """Write ``summary.md`` and ``report.md`` (the summary followed by
    every markdown table the steps wrote).

    Returns:
        list[str]: The two paths.
    """
    summary_path = osp.join(out_dir, 'summary.md')
    with open(summary_path, 'w') as f:
        f.write('```\n' + summary + '```\n')
    parts = ['# GPU suite report', '', '```', summary.rstrip(), '```', '']
    for step in suite['steps']:
        for name in step['files']:
            if name.endswith('.md'):
                with open(osp.join(out_dir, name)) as f:
                    parts += [f.read(), '']
    report_path = osp.join(out_dir, 'report.md')
    with open(report_path, 'w') as f:
        f.write('\n'.join(parts))
    return [summary_path, report_path]


def plot_bars(path: str, title: str, labels: List[str],
              series: Dict[str, List[float]]) -> None:
    """Grouped bars: one group per label, one bar per series.

    Args:
        path (str): PNG to write.
        title (str): Plot title.
        labels (list[str]): Group names.
        series (dict[str, list[float]]): Values by series name.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width
              for i in range(len(labels))]
        ax.bar(xs, values, width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.axhline(1.0, color='grey', linewidth=0.8)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
