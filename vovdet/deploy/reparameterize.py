"""Whole-detector structural re-parameterisation, as a checkpoint.

``tools/reparameterize.py CONFIG CHECKPOINT OUT`` turns a trained detector
checkpoint into its deploy form: every module with a ``switch_to_deploy()``
method (a RepVGG backbone) has its training branches folded into single
convs (:func:`vovdet.deploy.reparameterize_model`), every other weight is
copied unchanged, and a config that builds the deploy-form model is written
beside ``OUT``. Only the branch fusion is written: BN folding and
channels-last (:func:`vovdet.deploy.to_inference_form`) have no config
switch, so ``tools/test.py --deploy`` and the exporter apply them in memory.
"""
import copy
import os.path as osp
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.config import Config

from .inference_form import ReparameterizationError, reparameterize_model


def mark_deploy(cfg: Config, names: List[str]) -> None:
    """Set ``deploy=True`` on the config entries of converted modules.

    Args:
        cfg (Config): The training config, modified in place.
        names (list[str]): Qualified module names in the detector, e.g.
            ``['backbone']``; each must be a dict under ``cfg.model``.
    """
    for name in names:
        node = cfg.model
        for part in name.split('.') if name else []:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or 'type' not in node:
            raise ReparameterizationError(
                f"converted module '{name}' has no config entry "
                f"model.{name}=dict(type=...); cannot write a deploy config")
        node['deploy'] = True


def _model_state(checkpoint: dict, path: str) -> Dict:
    state = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state, dict) or not state:
        raise ReparameterizationError(
            f"checkpoint '{path}' holds no state_dict")
    # mmengine strips the wrapper prefix too (``revise_keys``)
    return OrderedDict((re.sub(r'^module\.', '', k), v)
                       for k, v in state.items())


def reparameterize_state_dict(model: nn.Module, state_dict: Dict
                              ) -> Tuple['OrderedDict', List[str]]:
    """Load a training-form state dict and return its deploy form.

    Args:
        model (nn.Module): The training-form detector built from the config
            ``state_dict`` was trained with; it is converted in place.
        state_dict (dict): The trained weights; every key must match
            ``model``.

    Returns:
        tuple[OrderedDict, list[str]]: The deploy state dict, in which every
        tensor outside the converted modules is the very tensor of
        ``state_dict``, and the names of the converted modules.
    """
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ReparameterizationError(
            'checkpoint does not match the training-form model of the config '
            f'(missing: {_preview(result.missing_keys)}; unexpected: '
            f'{_preview(result.unexpected_keys)}). Pass the config the model '
            'was trained with, not a deploy config.')
    converted = reparameterize_model(model)
    prefixes = tuple(f'{name}.' for name in converted if name)
    deploy_state = OrderedDict()
    for key, value in model.state_dict().items():
        inside = not prefixes or key.startswith(prefixes)
        deploy_state[key] = value if inside else state_dict[key]
    return deploy_state, converted


def _preview(keys: List[str], limit: int = 5) -> str:
    if not keys:
        return 'none'
    more = f', ... ({len(keys)} in all)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def default_deploy_config_path(config: str, out: str) -> str:
    """``<dir of out>/<config name>_deploy.py``."""
    name = osp.splitext(osp.basename(config))[0]
    return osp.join(osp.dirname(osp.abspath(out)), f'{name}_deploy.py')


def reparameterize_checkpoint(config: str,
                              checkpoint: str,
                              out: str,
                              out_config: Optional[str] = None,
                              cfg_options: Optional[dict] = None) -> dict:
    """Convert a trained detector checkpoint and write a deploy config.

    The model is built from ``config`` in its training form, loaded
    strictly, converted with :func:`reparameterize_model` and saved as
    ``{'meta': ..., 'state_dict': ...}``. ``meta`` is the source's, plus
    ``meta['reparameterized'] = dict(source=..., modules=[...])``. The
    optimizer, scheduler and message-hub states of the source are dropped:
    they belong to the training-form parameters, and a deploy checkpoint is
    for inference (``load_from``), not for resuming. The deploy config is
    ``config`` with ``deploy=True`` on every converted module and
    ``load_from=out``.

    Args:
        config (str): The config the checkpoint was trained with.
        checkpoint (str): The trained checkpoint.
        out (str): Path of the deploy checkpoint to write.
        out_config (str, optional): Path of the deploy config. Defaults to
            ``<dir of out>/<config name>_deploy.py``.
        cfg_options (dict, optional): Overrides merged into ``config``
            first.

    Returns:
        dict: ``checkpoint``, ``config`` (the deploy config path) and
        ``modules`` (converted module names).
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.runner.checkpoint import save_checkpoint

    from vovdet.utils import safe_load_checkpoint, to_plain

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    source = safe_load_checkpoint(checkpoint, map_location='cpu')
    model = MODELS.build(cfg.model)
    model.eval()
    state, converted = reparameterize_state_dict(
        model, _model_state(source, checkpoint))
    deploy_cfg = copy.deepcopy(cfg)
    mark_deploy(deploy_cfg, converted)
    deploy_cfg.load_from = osp.abspath(out)

    meta = copy.deepcopy(source.get('meta') or {})
    meta['reparameterized'] = dict(
        source=osp.abspath(checkpoint), modules=converted)
    save_checkpoint(dict(meta=to_plain(meta, 'meta'), state_dict=state),
                    out, backend_args=dict(backend='atomic_local'))
    out_config = out_config or default_deploy_config_path(config, out)
    deploy_cfg.dump(out_config)
    return dict(checkpoint=out, config=out_config, modules=converted)
