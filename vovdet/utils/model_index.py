"""The model index shipped with the package (``model-index.yml``).

The top-level ``model-index.yml`` imports one ``metafile.yml`` per model
family (``configs/<family>/metafile.yml``); each lists its configs with
their parameters, FLOPs and the paper's metric. The package carries them in
``vovdet/.mim`` (``configs`` and ``model-index.yml`` link to the
checkout's), the layout mmengine and openmim read:
``DetInferencer(model=NAME, scope='vovdet')``, ``'vovdet::_base_/...'`` and
``mim search vovdet``.
"""
import difflib
import os.path as osp
from typing import Dict, List

from mmengine.fileio import load

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def model_index_dir() -> str:
    """The folder holding ``model-index.yml`` and ``configs/``.

    The checkout's root when ``configs/`` sits beside the package (a git
    checkout or an editable install), ``vovdet/.mim`` otherwise: the choice
    mmengine's inferencers make (``BaseInferencer._get_repo_or_mim_dir``).
    """
    root = osp.dirname(PACKAGE_DIR)
    if osp.isdir(osp.join(root, 'configs')):
        return root
    return osp.join(PACKAGE_DIR, '.mim')


def load_model_index() -> List[Dict]:
    """Every model of every metafile, in index order.

    Returns:
        list[dict]: The metafiles' ``Models`` entries (``Name``, ``Config``
        relative to :func:`model_index_dir`, ``Metadata``, ``Results``,
        ``Weights``), each with ``Metafile``: the metafile's path relative
        to :func:`model_index_dir`.
    """
    root = model_index_dir()
    models = []
    for metafile in load(osp.join(root, 'model-index.yml'))['Import']:
        for model in load(osp.join(root, metafile))['Models']:
            models.append(dict(model, Metafile=metafile))
    return models


def find_model(name: str) -> Dict:
    """The model-index entry called ``name`` (case-insensitive).

    Raises:
        ValueError: No such model; the message lists the closest names.
    """
    models = {m['Name'].lower(): m for m in load_model_index()}
    if name.lower() in models:
        return models[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(models), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ''
    raise ValueError(
        f"'{name}' is neither a config file nor a model name of vovdet's "
        f'model index ({len(models)} models: `mim search vovdet` or '
        f'docs/model_zoo.md list them){hint}')
