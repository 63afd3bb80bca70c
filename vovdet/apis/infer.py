"""``tools/infer.py``: run a detector on images, folders and videos.

Built on mmdet's ``DetInferencer`` (model names from the model index,
checkpoint loading, the config's test pipeline, batching) with three
changes: class names come from the config's test set when the checkpoint
has none (mmdet falls back to COCO's 80 names); ``--deploy`` converts the
model to its inference form; every input, image or video frame, is drawn
and written the same way, so a video's frames look like its images.

For each input ``NAME.EXT`` it writes ``OUT_DIR/vis/NAME.EXT`` (the image
with boxes, masks, class names and scores; ``NAME.mp4`` for a video) and
``OUT_DIR/preds/NAME.json`` (mmdet's prediction dict, plus the class names;
one per frame for a video). Predictions below ``--score-thr`` are neither
drawn nor written; with ``--agnostic-nms`` neither are those that box an
object a higher-scoring prediction of another class already boxes (one
label per object,
:func:`vovdet.analysis.demo_report.suppress_class_duplicates`).
"""
import argparse
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Tuple, Union

import cv2
import mmcv
import numpy as np
from mmdet.apis import DetInferencer
from mmdet.registry import DATASETS
from mmdet.structures import DetDataSample

from vovdet.analysis.demo_report import suppress_class_duplicates
from vovdet.utils.model_index import find_model

from .common import parse

# mmdet's DetInferencer reads these from folders (mmdet.apis.det_inferencer)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                    '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv')


class InferenceInputError(ValueError):
    """An input path, model name or checkpoint that cannot be used."""


def collect_inputs(paths: List[str]) -> List[Tuple[str, str]]:
    """Expand the command line's inputs into ``(path, kind)`` pairs.

    A folder contributes its images (not its subfolders or videos), sorted
    by name; a file is an image or a video by its extension.

    Args:
        paths (list[str]): Image files, video files and folders.

    Returns:
        list[tuple[str, str]]: ``(path, 'image' | 'video')`` in order.

    Raises:
        InferenceInputError: A path that does not exist, a file of another
            type, a folder without images, or two inputs that would write
            the same output name.
    """
    if not paths:
        raise InferenceInputError('no inputs: name images, folders or videos')
    found = []
    for path in paths:
        if osp.isdir(path):
            images = sorted(
                name for name in os.listdir(path)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and osp.isfile(osp.join(path, name)))
            if not images:
                raise InferenceInputError(
                    f"folder '{path}' holds no images "
                    f"({' '.join(IMAGE_EXTENSIONS)}); name videos one by one")
            found += [(osp.join(path, name), 'image') for name in images]
        elif osp.isfile(path):
            ext = osp.splitext(path)[1].lower()
            if ext in IMAGE_EXTENSIONS:
                found.append((path, 'image'))
            elif ext in VIDEO_EXTENSIONS:
                found.append((path, 'video'))
            else:
                raise InferenceInputError(
                    f"input '{path}': unsupported extension '{ext}'; images: "
                    f"{' '.join(IMAGE_EXTENSIONS)}; videos: "
                    f"{' '.join(VIDEO_EXTENSIONS)}")
        else:
            raise InferenceInputError(f"input '{path}' does not exist")
    by_name: Dict[str, str] = {}
    for path, _ in found:
        name = osp.splitext(osp.basename(path))[0]
        if name in by_name:
            raise InferenceInputError(
                f"inputs '{by_name[name]}' and '{path}' would both write "
                f"'{name}' to the output folder; infer them into different "
                f'--out-dir folders')
        by_name[name] = path
    return found


class VoVDetInferencer(DetInferencer):
    """mmdet's ``DetInferencer``; a checkpoint without ``dataset_meta`` (or
    no checkpoint) gets the class names and palette of the config's test
    set instead of COCO's."""

    def _load_weights_to_model(self, model, checkpoint, cfg) -> None:
        meta = (checkpoint or {}).get('meta', {})
        if 'dataset_meta' in meta or 'CLASSES' in meta:
            super()._load_weights_to_model(model, checkpoint, cfg)
            return
        with warnings.catch_warnings():
            warnings.filterwarnings(
                'ignore', message='.*use COCO classes by default')
            super()._load_weights_to_model(model, checkpoint, cfg)
        test_set = dict(cfg.test_dataloader.dataset, lazy_init=True)
        model.dataset_meta = dict(DATASETS.build(test_set).metainfo)


def build_inferencer(model: str,
                     weights: Optional[str] = None,
                     device: Optional[str] = None,
                     deploy: bool = False):
    """A ``DetInferencer`` for a config file or a model-index name.

    Args:
        model (str): A config file, or a model name of vovdet's model index
            (``mim search vovdet``), e.g. ``vovnet39_maskrcnn_coco``.
        weights (str, optional): A checkpoint; without one the model keeps
            its random initialisation (mmdet warns).
        device (str, optional): ``cpu``, ``cuda``, ``cuda:1`` ...; the
            default is CUDA when available.
        deploy (bool): Convert the model to its inference form
            (:func:`vovdet.deploy.to_inference_form`: RepVGG branches fused,
            BatchNorms folded into convs, checked on one random image)
            after loading the weights.

    Returns:
        VoVDetInferencer: Ready to call.
    """
    if model.endswith('.py') and not osp.isfile(model):
        raise InferenceInputError(f"config file '{model}' does not exist")
    if not osp.isfile(model):
        try:
            find_model(model)
        except ValueError as err:
            raise InferenceInputError(str(err)) from None
    if weights is not None and not osp.isfile(weights):
        raise InferenceInputError(f"checkpoint '{weights}' does not exist")
    inferencer = VoVDetInferencer(
        model=model, weights=weights, device=device, scope='vovdet',
        show_progress=False)
    if deploy:
        from vovdet.deploy import feature_check, to_inference_form
        form = to_inference_form(inferencer.model,
                                 check=feature_check(inferencer.model))
        print(f'[infer] {form}', flush=True)
    return inferencer


def predict(inferencer: DetInferencer, image: Union[str, np.ndarray],
            score_thr: float, agnostic_nms: bool = False) -> DetDataSample:
    """One image's predictions, those below ``score_thr`` dropped.

    Args:
        inferencer: From :func:`build_inferencer`.
        image (str or ndarray): A path, or a BGR ``uint8`` array (a video
            frame as OpenCV reads it).
        score_thr (float): Minimum score kept.
        agnostic_nms (bool): Also drop the predictions that overlap (IoU
            >= 0.5) a higher-scoring one of another class: class-agnostic
            NMS after the detector's per-class NMS.

    Returns:
        DetDataSample: The prediction, in the image's pixel coordinates.
    """
    [sample] = inferencer(image, return_datasamples=True,
                          no_save_vis=True, no_save_pred=True)['predictions']
    pred = sample.pred_instances
    keep = pred.scores >= score_thr
    if agnostic_nms:
        keep &= suppress_class_duplicates(pred.bboxes, pred.scores,
                                          pred.labels).to(keep.device)
    sample.pred_instances = pred[keep]
    return sample


def draw(inferencer: DetInferencer, image_rgb: np.ndarray,
         sample: DetDataSample) -> np.ndarray:
    """The image with the sample's boxes, masks, class names and scores.

    Returns:
        ndarray: RGB ``uint8``, the size of ``image_rgb``.
    """
    visualizer = inferencer.visualizer
    visualizer.add_datasample(
        'infer', image_rgb, sample, draw_gt=False, show=False,
        pred_score_thr=0)
    return visualizer.get_image()


def prediction_dict(inferencer: DetInferencer,
                    sample: DetDataSample) -> Dict:
    """mmdet's JSON form of a prediction plus ``label_names``."""
    result = inferencer.pred2dict(sample)
    classes = inferencer.model.dataset_meta['classes']
    result['label_names'] = [classes[i] for i in result.get('labels', [])]
    return result


def infer_video(inferencer: DetInferencer, path: str, vis_path: str,
                score_thr: float, agnostic_nms: bool = False) -> Dict:
    """Predict and draw every frame; write an mp4 of the drawn frames.

    Returns:
        dict: ``input``, ``fps`` and ``frames`` (one prediction dict per
        frame, with its index).
    """
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise InferenceInputError(
            f"cannot read video '{path}' (OpenCV could not open it)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    frames = []
    try:
        ok, frame = capture.read()
        while ok:
            sample = predict(inferencer, frame, score_thr, agnostic_nms)
            drawn = draw(inferencer, frame[:, :, ::-1], sample)[:, :, ::-1]
            if writer is None:
                height, width = drawn.shape[:2]
                writer = cv2.VideoWriter(
                    vis_path, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                    (width, height))
                if not writer.isOpened():
                    raise RuntimeError(
                        f"OpenCV cannot write '{vis_path}' (mp4v codec)")
            writer.write(np.ascontiguousarray(drawn))
            frames.append(dict(frame=len(frames),
                               **prediction_dict(inferencer, sample)))
            ok, frame = capture.read()
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise InferenceInputError(f"video '{path}' has no readable frame")
    return dict(input=path, fps=fps, frames=frames)


def infer(model: str,
          inputs: List[str],
          out_dir: str,
          weights: Optional[str] = None,
          score_thr: float = 0.3,
          device: Optional[str] = None,
          deploy: bool = False,
          agnostic_nms: bool = False) -> List[Dict]:
    """Run a detector on images, folders and videos; write pictures + JSON.

    Args:
        model (str): Config file or model-index name.
        inputs (list[str]): Images, folders of images, videos.
        out_dir (str): Gets ``vis/`` and ``preds/``.
        weights (str, optional): Checkpoint.
        score_thr (float): Predictions below it are neither drawn nor
            written.
        device (str, optional): Torch device.
        deploy (bool): Inference form (see :func:`build_inferencer`).
        agnostic_nms (bool): One label per object (see :func:`predict`).

    Returns:
        list[dict]: Per input: ``input``, ``kind``, ``vis`` and ``pred``
        (written paths) and ``detections`` (count; summed over frames for
        a video).
    """
    items = collect_inputs(inputs)
    inferencer = build_inferencer(model, weights, device, deploy)
    for sub in ('vis', 'preds'):
        os.makedirs(osp.join(out_dir, sub), exist_ok=True)
    written = []
    for path, kind in items:
        name, ext = osp.splitext(osp.basename(path))
        pred_path = osp.join(out_dir, 'preds', f'{name}.json')
        if kind == 'video':
            vis_path = osp.join(out_dir, 'vis', f'{name}.mp4')
            result = infer_video(inferencer, path, vis_path, score_thr,
                                 agnostic_nms)
            count = sum(len(f.get('labels', [])) for f in result['frames'])
        else:
            vis_path = osp.join(out_dir, 'vis', f'{name}{ext}')
            sample = predict(inferencer, path, score_thr, agnostic_nms)
            image = mmcv.imread(path, channel_order='rgb')
            mmcv.imwrite(draw(inferencer, image, sample)[:, :, ::-1],
                         vis_path)
            result = dict(input=path, **prediction_dict(inferencer, sample))
            count = len(result.get('labels', []))
        with open(pred_path, 'w', encoding='utf-8') as f:
            json.dump(result, f)
        print(f'[infer] {path}: {count} detections >= {score_thr} -> '
              f'{vis_path}, {pred_path}', flush=True)
        written.append(dict(input=path, kind=kind, vis=vis_path,
                            pred=pred_path, detections=count))
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Run a detector on images, folders of images and '
        'videos; write drawn pictures (OUT_DIR/vis) and predictions as JSON '
        '(OUT_DIR/preds)')
    parser.add_argument(
        'model', help='config file, or a model name of the model index '
        '(`mim search vovdet`, docs/model_zoo.md)')
    parser.add_argument(
        'inputs', nargs='+', help='images, folders of images, videos '
        f"({' '.join(VIDEO_EXTENSIONS)})")
    parser.add_argument('--weights', help='checkpoint (default: none, a '
                        'randomly initialised model)')
    parser.add_argument('--out-dir', default='work_dirs/infer',
                        help='output folder (default: work_dirs/infer)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='draw and write predictions scoring at least this '
        '(default: 0.3)')
    parser.add_argument('--device', help='cpu, cuda, cuda:1 ... (default: '
                        'CUDA when available)')
    parser.add_argument(
        '--deploy', action='store_true', help='run the inference form '
        '(RepVGG branches fused, BatchNorms folded into convs; '
        'vovdet.deploy)')
    parser.add_argument(
        '--agnostic-nms', action='store_true',
        help='one label per object: also drop the predictions that overlap '
        '(IoU >= 0.5) a higher-scoring one of another class (class-agnostic '
        "NMS after the detector's per-class NMS; COCO AP is measured "
        'without it)')
    return parser


def main(argv: Optional[List[str]] = None) -> List[Dict]:
    """Run ``tools/infer.py``; returns what :func:`infer` returns."""
    args = parse(build_parser(), argv)
    return infer(args.model, args.inputs, args.out_dir, args.weights,
                 args.score_thr, args.device, args.deploy, args.agnostic_nms)
