"""Deterministic synthetic "shapes" dataset in COCO and VOC formats.

Coloured rectangles, ellipses, triangles and hexagons on textured
backgrounds, with exact polygon masks. The same images are described twice:

- ``annotations/instances_{train,val}.json`` (COCO instance segmentation),
- ``VOC2007/Annotations/*.xml`` with ``ImageSets/Main/{trainval,test}.txt``
  (PASCAL VOC detection; ``trainval`` = the COCO train split, ``test`` = val).

Every random draw comes from one ``numpy.random.Generator`` seeded by
``seed``, so two runs with the same arguments write identical files.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple
from xml.etree import ElementTree as ET

import cv2
import numpy as np

SHAPES_CLASSES = ('rectangle', 'ellipse', 'triangle', 'hexagon')
SHAPES_PALETTE = [(220, 20, 60), (0, 128, 255), (0, 200, 0), (255, 160, 0)]

# Written last; its presence means the dataset is complete.
_DONE_FILE = 'shapes_meta.json'


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: a colour gradient, stripes and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(40, 215, size=(2, 3))
    angle = rng.uniform(0, np.pi)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    freq = rng.uniform(4, 16)
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(angle + 1) +
                                         yy * np.sin(angle + 1)))
    img += rng.uniform(5, 20) * stripes[..., None]
    img += rng.normal(0, rng.uniform(4, 14), size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_polygon(rng: np.random.Generator, label: int, cx: float,
                   cy: float, r: float) -> np.ndarray:
    """Vertices (N, 2) of one shape, integer pixel coordinates."""
    angle = rng.uniform(0, 360)
    name = SHAPES_CLASSES[label]
    if name == 'rectangle':
        aspect = rng.uniform(0.5, 1.0)
        w, h = 2 * r, 2 * r * aspect
        box = cv2.boxPoints(((cx, cy), (w, h), angle))
        poly = box
    elif name == 'ellipse':
        axes = (int(r), int(max(4, r * rng.uniform(0.5, 1.0))))
        poly = cv2.ellipse2Poly((int(cx), int(cy)), axes, int(angle), 0, 360,
                                10)
    else:
        n = 3 if name == 'triangle' else 6
        theta = np.deg2rad(angle) + np.arange(n) * 2 * np.pi / n
        poly = np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], 1)
    return np.round(np.asarray(poly, dtype=np.float64)).astype(np.int32)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) *
             (b[3] - b[1]) - inter)
    return inter / union if union > 0 else 0.0


def render_image(rng: np.random.Generator, size: int, min_objects: int,
                 max_objects: int, min_radius: float, max_radius: float
                 ) -> Tuple[np.ndarray, List[Dict]]:
    """Render one image and its instances.

    Shapes are drawn in order and later shapes occlude earlier ones; each
    instance's mask is its polygon minus what later shapes cover, so masks,
    boxes and areas are exact. Instances occluded to less than half of their
    area are dropped from the annotations (and from the picture).

    Returns:
        tuple: BGR uint8 image and a list of instances, each a dict with
        ``label``, ``bbox`` (x1, y1, x2, y2, inclusive-exclusive pixels),
        ``polygons`` (list of flat [x, y, ...] lists) and ``area``.
    """
    img = _background(rng, size)
    num = int(rng.integers(min_objects, max_objects + 1))
    drawn = []
    for _ in range(num):
        for _attempt in range(10):
            r = rng.uniform(min_radius, max_radius)
            cx, cy = rng.uniform(r, size - r, size=2)
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(_iou(box, d['circle']) < 0.3 for d in drawn):
                break
        else:
            continue
        label = int(rng.integers(len(SHAPES_CLASSES)))
        poly = _shape_polygon(rng, label, cx, cy, r)
        colour = rng.integers(0, 256, size=3)
        # Keep the shape visible against its background.
        local = img[int(cy), int(cx)].astype(np.int64)
        if np.abs(colour - local).sum() < 150:
            colour = 255 - local
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [poly], 1)
        drawn.append(dict(label=label, poly=poly, colour=colour, mask=mask,
                          circle=box))

    instances = []
    covered = np.zeros((size, size), np.uint8)
    kept = []
    for d in reversed(drawn):
        visible = d['mask'] & (1 - covered)
        full = int(d['mask'].sum())
        if full > 0 and visible.sum() >= 0.5 * full:
            kept.append((d, visible))
        covered |= d['mask']
    for d, visible in reversed(kept):
        img[d['mask'].astype(bool)] = d['colour'].astype(np.uint8)
        contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        polygons = [c.reshape(-1).astype(float).tolist() for c in contours
                    if len(c) >= 3]
        ys, xs = np.nonzero(visible)
        instances.append(
            dict(label=d['label'],
                 bbox=[float(xs.min()), float(ys.min()),
                       float(xs.max() + 1), float(ys.max() + 1)],
                 polygons=polygons,
                 area=float(visible.sum())))
    # Small shading noise so that colours are not perfectly flat.
    noise = rng.normal(0, 3, size=img.shape)
    img = np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)
    return img, instances


def _voc_xml(filename: str, size: int, instances: List[Dict]) -> bytes:
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'VOC2007'
    ET.SubElement(root, 'filename').text = filename
    sz = ET.SubElement(root, 'size')
    for tag, val in (('width', size), ('height', size), ('depth', 3)):
        ET.SubElement(sz, tag).text = str(val)
    for inst in instances:
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = SHAPES_CLASSES[inst['label']]
        ET.SubElement(obj, 'pose').text = 'Unspecified'
        ET.SubElement(obj, 'truncated').text = '0'
        ET.SubElement(obj, 'difficult').text = '0'
        bb = ET.SubElement(obj, 'bndbox')
        # VOC boxes are 1-based inclusive; mmdet subtracts 1 from xmin/ymin.
        x1, y1, x2, y2 = inst['bbox']
        for tag, val in (('xmin', x1 + 1), ('ymin', y1 + 1), ('xmax', x2),
                         ('ymax', y2)):
            ET.SubElement(bb, tag).text = str(int(val))
    return ET.tostring(root)


def generate_shapes_dataset(out_dir: str,
                            num_train: int = 400,
                            num_val: int = 100,
                            image_size: int = 192,
                            min_objects: int = 1,
                            max_objects: int = 4,
                            min_radius: float = 14,
                            max_radius: float = 48,
                            seed: int = 0) -> Dict:
    """Write the shapes dataset to ``out_dir`` in COCO and VOC formats.

    Args:
        out_dir (str): Output directory (created if missing).
        num_train (int): Training images (COCO ``train``, VOC ``trainval``).
        num_val (int): Held-out images (COCO ``val``, VOC ``test``).
        image_size (int): Square image side in pixels.
        min_objects (int): Minimum shapes drawn per image (placement may
            drop one that overlaps too much; at least one is always drawn).
        max_objects (int): Maximum shapes per image.
        min_radius (float): Smallest shape radius in pixels.
        max_radius (float): Largest shape radius in pixels.
        seed (int): Seed of the random generator.

    Returns:
        dict: The dataset's meta information (also written to
        ``shapes_meta.json`` once every other file is written).
    """
    if num_train < 1 or num_val < 1:
        raise ValueError('num_train and num_val must be positive')
    if not 1 <= min_objects <= max_objects:
        raise ValueError(f'need 1 <= min_objects <= max_objects, got '
                         f'{min_objects} and {max_objects}')
    if not 2 * max_radius < image_size:
        raise ValueError(f'max_radius {max_radius} does not fit an image of '
                         f'{image_size} px')
    rng = np.random.default_rng(seed)
    voc_root = osp.join(out_dir, 'VOC2007')
    for sub in ('JPEGImages', 'Annotations', osp.join('ImageSets', 'Main')):
        os.makedirs(osp.join(voc_root, sub), exist_ok=True)
    os.makedirs(osp.join(out_dir, 'annotations'), exist_ok=True)
    done = osp.join(out_dir, _DONE_FILE)
    if osp.exists(done):
        os.remove(done)

    categories = [dict(id=i + 1, name=n, supercategory='shape')
                  for i, n in enumerate(SHAPES_CLASSES)]
    splits = (('train', 'trainval', num_train), ('val', 'test', num_val))
    image_id = 0
    ann_id = 0
    for coco_split, voc_split, count in splits:
        images, annotations, names = [], [], []
        for _ in range(count):
            image_id += 1
            name = f'{image_id:06d}'
            img, instances = render_image(rng, image_size, min_objects,
                                          max_objects, min_radius,
                                          max_radius)
            file_name = f'{name}.jpg'
            cv2.imwrite(osp.join(voc_root, 'JPEGImages', file_name), img,
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            with open(osp.join(voc_root, 'Annotations', f'{name}.xml'),
                      'wb') as f:
                f.write(_voc_xml(file_name, image_size, instances))
            names.append(name)
            images.append(
                dict(id=image_id, file_name=f'VOC2007/JPEGImages/{file_name}',
                     width=image_size, height=image_size))
            for inst in instances:
                ann_id += 1
                x1, y1, x2, y2 = inst['bbox']
                annotations.append(
                    dict(id=ann_id, image_id=image_id,
                         category_id=inst['label'] + 1,
                         bbox=[x1, y1, x2 - x1, y2 - y1], area=inst['area'],
                         segmentation=inst['polygons'], iscrowd=0))
        with open(osp.join(out_dir, 'annotations',
                           f'instances_{coco_split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=categories), f)
        with open(osp.join(voc_root, 'ImageSets', 'Main', f'{voc_split}.txt'),
                  'w') as f:
            f.write('\n'.join(names) + '\n')

    meta = dict(classes=list(SHAPES_CLASSES), num_train=num_train,
                num_val=num_val, image_size=image_size,
                min_objects=min_objects, max_objects=max_objects, min_radius=min_radius,
                max_radius=max_radius, seed=seed)
    with open(done, 'w') as f:
        json.dump(meta, f, indent=2)
    return meta


def shapes_dataset_ready(out_dir: str, **kwargs) -> bool:
    """Whether ``out_dir`` holds a complete dataset generated with ``kwargs``.

    Args:
        out_dir (str): Dataset directory.
        **kwargs: Arguments of :func:`generate_shapes_dataset` to compare
            with the recorded ones.

    Returns:
        bool: True if the dataset is complete and was made with ``kwargs``.
    """
    done = osp.join(out_dir, _DONE_FILE)
    if not osp.exists(done):
        return False
    with open(done) as f:
        meta = json.load(f)
    return all(meta.get(k) == v for k, v in kwargs.items())
