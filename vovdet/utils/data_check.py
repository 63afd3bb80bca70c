"""Fail fast, with a useful message, when a config's dataset is missing.

mmengine builds datasets lazily deep inside the runner, so a missing
``data/coco`` would otherwise surface as a long traceback minutes into a
run. :func:`check_dataset_files` is called by ``tools/train.py`` and
``tools/test.py`` before the runner is built.
"""
import json
import os.path as osp
import sys
from typing import Iterator, List, Tuple

from mmengine.config import Config, ConfigDict


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder named by the config does not exist."""


class MalformedAnnotationError(ValueError):
    """An annotation file exists but cannot be read as annotations."""


def iter_datasets(cfg: ConfigDict) -> Iterator[ConfigDict]:
    """Yield leaf dataset configs, looking through dataset wrappers."""
    if 'dataset' in cfg:
        yield from iter_datasets(cfg.dataset)
    elif 'datasets' in cfg:
        for sub in cfg.datasets:
            yield from iter_datasets(sub)
    else:
        yield cfg


def join_data_root(root, path):
    """``path`` under a dataset's ``data_root`` (absolute paths and URLs
    stay as they are)."""
    if not path or osp.isabs(path) or '://' in str(path):
        return path
    return osp.join(root or '', path)


def _expected_paths(ds: ConfigDict) -> List[Tuple[str, str]]:
    """``(kind, path)`` pairs a dataset config needs on disk."""
    root = ds.get('data_root', '') or ''
    prefix = ds.get('data_prefix', {}) or {}
    paths = []
    ann_file = ds.get('ann_file', '')
    if ann_file:
        paths.append(('annotation file', join_data_root(root, ann_file)))
    if 'sub_data_root' in prefix:
        paths.append(('image folder',
                      join_data_root(root, prefix['sub_data_root'])))
    elif prefix.get('img'):
        paths.append(('image folder', join_data_root(root, prefix['img'])))
    return paths


def _check_coco_json(path: str) -> List[str]:
    """Check a COCO annotation file; return its images' ``file_name`` s."""
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MalformedAnnotationError(
            f"annotation file '{path}' is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise MalformedAnnotationError(
            f"annotation file '{path}' must hold a JSON object with "
            'images/annotations/categories')
    missing = [k for k in ('images', 'annotations', 'categories')
               if k not in data]
    if missing:
        raise MalformedAnnotationError(
            f"annotation file '{path}' is not in COCO format: missing "
            f"key(s) {', '.join(missing)}")
    _warn_dropped_annotations(path, data)
    return [im['file_name'] for im in data['images']
            if isinstance(im, dict) and 'file_name' in im]


def _dropped_annotation_reason(ann, images: dict, cat_ids: set) -> str:
    """Why mmdet's ``CocoDataset`` will skip ``ann`` ('' if it keeps it);
    its tests, named by their cause."""
    if not isinstance(ann, dict):
        return 'not a JSON object'
    image = images.get(ann.get('image_id'))
    if image is None:
        return 'an image_id that no image has'
    bbox = ann.get('bbox')
    if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
            or not all(isinstance(v, (int, float)) for v in bbox)):
        return 'a bbox that is not [x, y, width, height]'
    x, y, w, h = bbox
    if w < 1 or h < 1:
        return 'a width or height below 1 pixel'
    if not isinstance(ann.get('area'), (int, float)) or ann['area'] <= 0:
        return 'an area of 0 or less'
    width, height = image.get('width', 0), image.get('height', 0)
    if (min(x + w, width) - max(x, 0) <= 0
            or min(y + h, height) - max(y, 0) <= 0):
        return 'a box outside its image'
    if ann.get('category_id') not in cat_ids:
        return 'a category_id that no category defines'
    return ''


def _warn_dropped_annotations(path: str, data: dict) -> None:
    """Warn once for ``path`` about the annotations mmdet will drop without
    a word (their objects become background), with the counts per cause
    and the first annotation ids."""
    images = {im.get('id'): im for im in data['images']
              if isinstance(im, dict)}
    cat_ids = {c.get('id') for c in data['categories'] if isinstance(c, dict)}
    dropped = {}
    for ann in data['annotations']:
        reason = _dropped_annotation_reason(ann, images, cat_ids)
        if reason:
            dropped.setdefault(reason, []).append(
                ann.get('id', '?') if isinstance(ann, dict) else '?')
    if not dropped:
        return
    total = sum(len(ids) for ids in dropped.values())
    causes = '; '.join(
        f"{len(ids)} with {reason} (id{'s' if len(ids) > 1 else ''} "
        f"{', '.join(map(str, ids[:5]))}{', ...' if len(ids) > 5 else ''})"
        for reason, ids in dropped.items())
    print(f"[vovdet] warning: '{path}': {total} of the "
          f"{len(data['annotations'])} annotations will be dropped by "
          f"mmdet's loader, and their objects treated as background: "
          f'{causes}. Fix or remove them', file=sys.stderr, flush=True)


def _check_voc_xml(ds: ConfigDict, ann_file: str) -> List[str]:
    """Parse every VOC XML the image list names, as mmdet's loader will,
    naming the file on an error (mmdet raises a bare ``ParseError`` or
    ``ValueError`` mid-load); return the image ids."""
    import xml.etree.ElementTree as ET

    root = ds.get('data_root', '') or ''
    sub_root = join_data_root(root, (ds.get('data_prefix') or {}).get(
        'sub_data_root', ''))
    ann_dir = osp.join(sub_root, ds.get('ann_subdir', 'Annotations'))
    with open(ann_file, encoding='utf-8') as f:
        img_ids = [line.strip() for line in f if line.strip()]
    for img_id in img_ids:
        xml_path = osp.join(ann_dir, f'{img_id}.xml')
        if not osp.isfile(xml_path):
            raise DatasetNotFoundError(
                f"annotation '{xml_path}' not found: '{ann_file}' lists image "
                f"'{img_id}'; add the XML or remove the id from the list")
        try:
            tree = ET.parse(xml_path)
        except ET.ParseError as e:
            raise MalformedAnnotationError(
                f"annotation file '{xml_path}' is not valid XML ({e}); fix "
                'or regenerate it') from None
        for index, obj in enumerate(tree.findall('object')):
            box = obj.find('bndbox')
            for key in ('xmin', 'ymin', 'xmax', 'ymax'):
                node = None if box is None else box.find(key)
                text = None if node is None else node.text
                try:
                    float(text)
                except (TypeError, ValueError):
                    raise MalformedAnnotationError(
                        f"annotation file '{xml_path}', object {index} "
                        f"({obj.findtext('name')}): <{key}> is {text!r}, "
                        'not a number') from None
    return img_ids


# The first bytes of the image formats OpenCV/PIL read here.
_IMAGE_MAGIC = (b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'BM', b'GIF8',
                b'II*\x00', b'MM\x00*', b'RIFF')


def _image_problem(path: str) -> str:
    """Why ``path`` cannot be an image ('' when it looks like one)."""
    if not osp.isfile(path):
        return 'missing'
    with open(path, 'rb') as f:
        head = f.read(12)
    if not head:
        return 'empty'
    if not head.startswith(_IMAGE_MAGIC):
        return 'not an image (unknown header)'
    return ''


def _check_images(split: str, ann_file: str, paths: List[str]) -> None:
    """Check that every image an annotation file lists exists and starts
    like an image file, so a bad one fails before training instead of at
    the iteration that reads it.

    Raises:
        MalformedAnnotationError: Missing, empty or non-image files; the
            message gives their count and the first ten with the reason.
    """
    bad = [(p, why) for p in paths for why in [_image_problem(p)] if why]
    if bad:
        listed = '; '.join(f"'{p}': {why}" for p, why in bad[:10])
        raise MalformedAnnotationError(
            f'{len(bad)} of the {len(paths)} {split} images listed in '
            f"'{ann_file}' cannot be read: {listed}"
            f"{' ...' if len(bad) > 10 else ''}. Restore the files or "
            'remove them from the annotation file')


def check_dataset_files(cfg: Config,
                        splits=('train', 'val', 'test')) -> None:
    """Check that every dataset the config will read exists on disk.

    Args:
        cfg (Config): A full mmdet config.
        splits (Sequence[str]): Which ``{split}_dataloader`` entries to check.

    Raises:
        DatasetNotFoundError: A file or folder is missing; the message names
            it, the config key holding it and how to point elsewhere.
        MalformedAnnotationError: A COCO annotation file is not valid COCO
            JSON, a VOC XML is not valid XML or has a box coordinate that
            is not a number, or listed images are missing or not images; the
            message names the files (and the object).
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or 'dataset' not in loader:
            continue
        for ds in iter_datasets(loader.dataset):
            for kind, path in _expected_paths(ds):
                if not path or '://' in str(path):
                    continue
                if not osp.exists(path):
                    root = ds.get('data_root', '') or '(none)'
                    raise DatasetNotFoundError(
                        f"{split} {kind} not found: '{path}'. The config "
                        f"expects the {ds.get('type', 'dataset')} data "
                        f"under data_root '{root}' (relative to the "
                        'current directory). Put or symlink the data there, '
                        'or point the config elsewhere, e.g. --cfg-options '
                        f'{split}_dataloader.dataset.data_root=/path/to/'
                        'data/ (and val_evaluator.ann_file/'
                        'test_evaluator.ann_file for COCO metrics).')
            _check_annotations(split, ds)


def _check_annotations(split: str, ds: ConfigDict) -> None:
    """Read a dataset's annotation file once: its COCO JSON or VOC XMLs,
    then the images it lists."""
    root = ds.get('data_root', '') or ''
    prefix = ds.get('data_prefix', {}) or {}
    ann_file = join_data_root(root, ds.get('ann_file', ''))
    if not ann_file or '://' in str(ann_file):
        return
    if ann_file.endswith('.json'):
        img = prefix.get('img') or ''
        folder = join_data_root(root, img) if img else root
        images = [osp.join(folder, name)
                  for name in _check_coco_json(ann_file)]
    elif ann_file.endswith('.txt') and 'sub_data_root' in prefix:
        folder = osp.join(join_data_root(root, prefix['sub_data_root']),
                          ds.get('img_subdir', 'JPEGImages'))
        images = [osp.join(folder, f'{img_id}.jpg')
                  for img_id in _check_voc_xml(ds, ann_file)]
    else:
        return
    _check_images(split, ann_file, images)
