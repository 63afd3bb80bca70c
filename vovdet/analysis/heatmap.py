"""How strongly each layer uses each earlier layer's features.

The VoVNet paper (Sec. 3.1, Fig. 2; after DenseNet's Fig. 5) draws, for a
trained network, the mean absolute weight that connects each source layer
``s`` to each target layer ``l``: for a 1x1 conv that reads a concatenation,
the input channels split into one group per source, and the mean ``|w|``
over a group (all output channels, that group's input channels, the kernel)
is the strength of that connection. Here every row (target) is divided by
its largest entry, so 1 marks the source a layer relies on most.

* **OSA module** (:class:`vovdet.models.layers.osa.OSAModule`): sources are
  the module input and layer 1..n; targets are layers 1..n (each reads only
  the previous one, a single source) and the aggregation 1x1 conv, whose
  input is ``concat(input, layer 1, ..., layer n)``. One figure per stage,
  one panel per module.
* **Dense block** (:class:`vovdet.models.backbones.densenet.DenseBlock`):
  layer ``l``'s first (1x1) conv reads ``concat(block input, layer 1, ...,
  layer l-1)``; when the block is followed by a transition (inside
  :class:`DenseNet`), its 1x1 conv reading the whole block is the last
  target. One figure per block.

Cells without a connection are NaN (blank in the figures).
"""
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..models.backbones.densenet import DenseBlock, DenseNet
from ..models.layers.osa import OSAModule


@dataclass
class ConnectionMap:
    """Connection strengths of one OSA module or dense block.

    Attributes:
        name (str): Module name in the model.
        kind (str): ``'osa'`` or ``'dense'``.
        figure (str): Name of the figure the map is drawn in (the stage for
            OSA modules, the block itself for dense blocks).
        sources (list[str]): Column labels.
        targets (list[str]): Row labels.
        mean_abs (np.ndarray): ``(targets, sources)`` mean |w|; NaN where a
            target does not read a source.
    """
    name: str
    kind: str
    figure: str
    sources: List[str]
    targets: List[str]
    mean_abs: np.ndarray

    @property
    def normalised(self) -> np.ndarray:
        """Each row divided by its largest entry."""
        return self.mean_abs / np.nanmax(self.mean_abs, axis=1,
                                         keepdims=True)

    def to_dict(self) -> Dict:
        """JSON-serialisable form (NaN as None)."""

        def clean(a: np.ndarray) -> List[List[Optional[float]]]:
            return [[None if np.isnan(v) else float(v) for v in row]
                    for row in a]

        return dict(
            name=self.name,
            kind=self.kind,
            figure=self.figure,
            sources=self.sources,
            targets=self.targets,
            mean_abs=clean(self.mean_abs),
            normalised=clean(self.normalised))


def group_mean_abs(weight: torch.Tensor,
                   group_sizes: Sequence[int]) -> np.ndarray:
    """Mean |w| of consecutive input-channel groups of a conv weight.

    Args:
        weight (Tensor): Conv weight ``(C_out, C_in, k, k)`` (groups=1).
        group_sizes (Sequence[int]): Channels of each group, in input order;
            must sum to ``C_in``.

    Returns:
        np.ndarray: One mean per group.
    """
    if sum(group_sizes) != weight.shape[1]:
        raise ValueError(f'groups {list(group_sizes)} sum to '
                         f'{sum(group_sizes)}, but the conv has '
                         f'{weight.shape[1]} input channels')
    w = weight.detach().abs().float()
    means, start = [], 0
    for size in group_sizes:
        means.append(w[:, start:start + size].mean().item())
        start += size
    return np.array(means)


def _convs(module: nn.Module) -> List[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def osa_connection_map(module: OSAModule, name: str,
                       figure: str) -> ConnectionMap:
    """Connection strengths of one OSA module.

    Args:
        module (OSAModule): The module.
        name (str): Its name in the model.
        figure (str): The figure it belongs to.

    Returns:
        ConnectionMap: ``n + 1`` targets (layers, aggregation) by ``n + 1``
        sources (input, layers).
    """
    n = len(module.layers)
    mid = [_convs(layer)[-1].out_channels for layer in module.layers]
    weight = module.aggregation.conv.weight
    in_channels = weight.shape[1] - sum(mid)
    strengths = np.full((n + 1, n + 1), np.nan)
    for i, layer in enumerate(module.layers):
        # layer i+1 reads only the output of source i (the chain)
        strengths[i, i] = _convs(layer)[0].weight.detach().abs().mean().item()
    strengths[n] = group_mean_abs(weight, [in_channels] + mid)
    sources = ['input'] + [f'layer{i + 1}' for i in range(n)]
    targets = [f'layer{i + 1}' for i in range(n)] + ['aggregation']
    return ConnectionMap(name, 'osa', figure, sources, targets, strengths)


def dense_block_connection_map(
        block: DenseBlock,
        name: str,
        transition_conv: Optional[nn.Conv2d] = None) -> ConnectionMap:
    """Connection strengths of one dense block.

    Args:
        block (DenseBlock): The block.
        name (str): Its name in the model.
        transition_conv (nn.Conv2d, optional): The 1x1 conv of the
            transition that reads the block's output.

    Returns:
        ConnectionMap: ``L`` (+1 with a transition) targets by ``L + 1``
        sources (block input, layers).
    """
    layers = list(block.values())
    growth = [layer.conv2.out_channels for layer in layers]
    in_channels = layers[0].conv1.in_channels
    num_targets = len(layers) + (transition_conv is not None)
    strengths = np.full((num_targets, len(layers) + 1), np.nan)
    for i, layer in enumerate(layers):
        strengths[i, :i + 1] = group_mean_abs(layer.conv1.weight,
                                              [in_channels] + growth[:i])
    targets = [f'layer{i + 1}' for i in range(len(layers))]
    if transition_conv is not None:
        strengths[-1] = group_mean_abs(transition_conv.weight,
                                       [in_channels] + growth)
        targets.append('transition')
    sources = ['input'] + [f'layer{i + 1}' for i in range(len(layers))]
    return ConnectionMap(name, 'dense', name, sources, targets, strengths)


def connection_maps(model: nn.Module) -> List[ConnectionMap]:
    """Connection strengths of every OSA module and dense block of a model.

    Args:
        model (nn.Module): A detector, backbone or neck.

    Returns:
        list[ConnectionMap]: In module order.

    Raises:
        ValueError: The model has neither.
    """
    transitions = {}
    for module in model.modules():
        if isinstance(module, DenseNet):
            stages = [getattr(module, n) for n in module.stage_names]
            for stage, following in zip(stages, stages[1:]):
                transitions[id(stage.denseblock)] = following.transition.conv
    maps = []
    for name, module in model.named_modules():
        if isinstance(module, OSAModule):
            maps.append(
                osa_connection_map(module, name, name.rpartition('.')[0]))
        elif isinstance(module, DenseBlock):
            maps.append(
                dense_block_connection_map(module, name,
                                           transitions.get(id(module))))
    if not maps:
        raise ValueError(
            f'{type(model).__name__} has no OSAModule and no DenseBlock; '
            f'the heatmaps are for VoVNet/OSA and DenseNet models')
    return maps


def _figure_file(figure: str) -> str:
    return (figure or 'model').replace('.', '_') + '.png'


def save_heatmaps(maps: Sequence[ConnectionMap], out_dir: str) -> List[str]:
    """Draw one PNG per figure (stage or dense block) and a JSON of all.

    Args:
        maps (Sequence[ConnectionMap]): From :func:`connection_maps`.
        out_dir (str): Output folder (created).

    Returns:
        list[str]: The PNG paths, then ``connection_strengths.json``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    figures: Dict[str, List[ConnectionMap]] = {}
    for m in maps:
        figures.setdefault(m.figure, []).append(m)
    cmap = plt.get_cmap('viridis').copy()
    cmap.set_bad('white')
    paths = []
    for figure, panels in figures.items():
        size = max(len(p.sources) for p in panels)
        side = min(3 + 0.3 * size, 16)
        fig, axes = plt.subplots(
            1, len(panels), figsize=(side * len(panels), side),
            squeeze=False)
        for ax, panel in zip(axes[0], panels):
            image = ax.imshow(
                np.ma.masked_invalid(panel.normalised), cmap=cmap, vmin=0,
                vmax=1)
            step = max(1, len(panel.sources) // 16)
            ax.set_xticks(range(0, len(panel.sources), step))
            ax.set_xticklabels(panel.sources[::step], rotation=90,
                               fontsize=7)
            ax.set_yticks(range(0, len(panel.targets), step))
            ax.set_yticklabels(panel.targets[::step], fontsize=7)
            ax.set_xlabel('source')
            ax.set_ylabel('target')
            ax.set_title(panel.name, fontsize=9)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                         label='mean |w| / row max')
        fig.tight_layout()
        path = osp.join(out_dir, _figure_file(figure))
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    json_path = osp.join(out_dir, 'connection_strengths.json')
    with open(json_path, 'w') as f:
        json.dump([m.to_dict() for m in maps], f, indent=2)
    return paths + [json_path]


def config_heatmaps(config: str,
                    checkpoint: str,
                    out_dir: str,
                    cfg_options: Optional[dict] = None) -> List[str]:
    """Build a config's model, load a checkpoint and save its heatmaps.

    Args:
        config (str): Config path.
        checkpoint (str): Trained weights (random weights show nothing).
        out_dir (str): Output folder.
        cfg_options (dict, optional): Config overrides.

    Returns:
        list[str]: The written files (see :func:`save_heatmaps`).
    """
    from mmengine.runner import load_checkpoint

    from .complexity import build_model_from_config
    model = build_model_from_config(config, cfg_options)
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    return save_heatmaps(connection_maps(model), out_dir)
