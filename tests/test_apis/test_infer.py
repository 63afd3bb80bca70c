"""tools/infer.py through the real CLI: an image, a folder and a video in,
drawn pictures, an mp4 and JSON predictions out, in the inference form
(--deploy), which predicts what the training form predicts; clear errors
for inputs it cannot use."""
import json
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from tests.test_deploy.test_reparameterize import (
    run_tool, save_trained_like_checkpoint, shapes_repvgg_config)
from vovdet.analysis.demo_report import class_duplicates
from vovdet.apis.common import run_cli
from vovdet.apis.infer import (InferenceInputError, build_inferencer,
                               collect_inputs)
from vovdet.apis.infer import main as infer_main
from vovdet.apis.infer import prediction_dict, predict
from vovdet.datasets.shapes import SHAPES_CLASSES

DEMO = 'configs/vovnet19slim_maskrcnn_shapes.py'


def shapes_images(shapes_root):
    folder = osp.join(shapes_root, 'VOC2007', 'JPEGImages')
    return [osp.join(folder, f'{i:06d}.jpg') for i in (1, 2, 3, 4)]


def write_video(path, images):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 5,
                             (96, 96))
    assert writer.isOpened()
    for image in images:
        writer.write(cv2.imread(image))
    writer.release()


def read_video(path):
    capture = cv2.VideoCapture(path)
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    capture.release()
    return frames


@pytest.fixture(scope='module')
def repvgg_run(tmp_path_factory, shapes_root):
    """tools/infer.py --deploy on an image, a folder of two and a 3-frame
    video, with a RepVGG-A0 Mask R-CNN checkpoint."""
    tmp = tmp_path_factory.mktemp('infer')
    config = shapes_repvgg_config(tmp, shapes_root)
    ckpt = str(tmp / 'repvgg.pth')
    save_trained_like_checkpoint(config, ckpt)
    first, *others = shapes_images(shapes_root)
    image = str(tmp / 'single.jpg')
    shutil.copy(first, image)
    folder = tmp / 'folder'
    folder.mkdir()
    for name in others[:2]:
        shutil.copy(name, folder)
    (folder / 'notes.txt').write_text('not an image: skipped')
    video = str(tmp / 'clip.mp4')
    write_video(video, others)
    out = tmp / 'out'
    proc = run_tool(['tools/infer.py', config, image, str(folder), video,
                     '--weights', ckpt, '--out-dir', str(out),
                     '--score-thr', '0.1', '--device', 'cpu', '--deploy'])
    return dict(config=config, ckpt=ckpt, image=image, video=video,
                out=out, tmp=tmp, log=proc.stdout + proc.stderr)


def load_json(path):
    with open(path) as f:
        return json.load(f)


def assert_prediction(pred, score_thr=0.1):
    assert len(pred['labels']) > 0
    assert len(pred['scores']) == len(pred['bboxes']) == len(
        pred['masks']) == len(pred['labels'])
    assert min(pred['scores']) >= score_thr
    # names from the checkpoint's dataset_meta, not COCO's
    assert pred['label_names'] == [SHAPES_CLASSES[i] for i in pred['labels']]


def test_infer_writes_pictures_and_json_for_image_and_folder(repvgg_run):
    out = repvgg_run['out']
    for name in ('single', '000002', '000003'):
        drawn = cv2.imread(str(out / 'vis' / f'{name}.jpg'))
        assert drawn is not None and drawn.shape == (96, 96, 3)
        pred = load_json(out / 'preds' / f'{name}.json')
        assert_prediction(pred)
        source = cv2.imread(pred['input'])
        # boxes, masks and labels drawn over the picture
        assert np.abs(drawn.astype(int) - source.astype(int)).mean() > 3
    assert not (out / 'preds' / 'notes.json').exists()
    assert '[infer] ' in repvgg_run['log']


def test_infer_writes_a_video_and_per_frame_json(repvgg_run):
    out = repvgg_run['out']
    frames = read_video(str(out / 'vis' / 'clip.mp4'))
    assert len(frames) == 3 and frames[0].shape == (96, 96, 3)
    result = load_json(out / 'preds' / 'clip.json')
    assert result['input'] == repvgg_run['video']
    assert result['fps'] == pytest.approx(5)
    assert [f['frame'] for f in result['frames']] == [0, 1, 2]
    for frame in result['frames']:
        assert_prediction(frame)


def test_infer_deploy_predicts_what_the_training_form_predicts(repvgg_run):
    log = repvgg_run['log']
    assert 'inference form: re-parameterised backbone' in log
    trained = build_inferencer(repvgg_run['config'], repvgg_run['ckpt'],
                               device='cpu')
    expected = prediction_dict(
        trained, predict(trained, repvgg_run['image'], 0.1))
    deployed = load_json(repvgg_run['out'] / 'preds' / 'single.json')
    assert deployed['labels'] == expected['labels']
    torch.testing.assert_close(torch.tensor(deployed['bboxes']),
                               torch.tensor(expected['bboxes']),
                               rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(torch.tensor(deployed['scores']),
                               torch.tensor(expected['scores']),
                               rtol=1e-4, atol=1e-4)


def test_infer_refuses_unsupported_file_with_one_line(tmp_path, capsys):
    notes = tmp_path / 'notes.txt'
    notes.write_text('x')
    # what tools/infer.py runs, in this process
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda: infer_main([DEMO, str(notes)]))
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (
        f"error: input '{notes}': unsupported extension '.txt'; images: "
        '.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp; videos: .mp4 '
        '.avi .mov .mkv\n')


def test_collect_inputs_names_what_is_wrong(tmp_path, shapes_root):
    with pytest.raises(InferenceInputError, match="'missing.jpg' does not"):
        collect_inputs(['missing.jpg'])
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(InferenceInputError, match='holds no images'):
        collect_inputs([str(empty)])
    image = shapes_images(shapes_root)[0]
    other = tmp_path / 'other'
    other.mkdir()
    shutil.copy(image, other / '000001.png')
    with pytest.raises(InferenceInputError, match='would both write'):
        collect_inputs([image, str(other)])
    assert collect_inputs([image, str(other)][:1]) == [(image, 'image')]


def test_build_inferencer_errors(tmp_path):
    with pytest.raises(InferenceInputError, match='did you mean '
                       'vovnet39_maskrcnn_coco'):
        build_inferencer('vovnet39_maskrcnn_cooc')
    with pytest.raises(InferenceInputError, match="config file 'no.py'"):
        build_inferencer('no.py')
    with pytest.raises(InferenceInputError, match="checkpoint 'none.pth'"):
        build_inferencer(DEMO, weights='none.pth')



def test_deploy_of_a_model_without_branches_or_bn_is_the_model(capsys):
    # the GN demo has nothing to fuse or fold: its inference form is itself
    build_inferencer(DEMO, device='cpu', deploy=True)
    assert '[infer] inference form: no branches to fuse, 0 BatchNorm ' \
        'folded into convs, max relative output change 0.0e+00' in \
        capsys.readouterr().out


def test_infer_agnostic_nms_keeps_one_label_per_object(repvgg_run):
    # the untrained head's 100 best boxes: several classes on one box
    cfg = Config.fromfile(repvgg_run['config'])
    cfg.model.test_cfg.rcnn.max_per_img = 100
    config = str(repvgg_run['tmp'] / 'repvgg_100_per_image.py')
    cfg.dump(config)
    trained = build_inferencer(config, repvgg_run['ckpt'], device='cpu')
    every = predict(trained, repvgg_run['image'], 0.0).pred_instances
    one = predict(trained, repvgg_run['image'], 0.0,
                  agnostic_nms=True).pred_instances
    duplicates = class_duplicates(every.bboxes, every.scores, every.labels,
                                  score_thr=0.0)
    assert duplicates > 0
    assert class_duplicates(one.bboxes, one.scores, one.labels,
                            score_thr=0.0) == 0
    assert len(every) - duplicates <= len(one) < len(every)
    # the CLI flag writes what predict() keeps
    out = repvgg_run['tmp'] / 'agnostic'
    infer_main([config, repvgg_run['image'], '--weights',
                repvgg_run['ckpt'], '--out-dir', str(out), '--score-thr',
                '0', '--device', 'cpu', '--agnostic-nms'])
    written = load_json(out / 'preds' / 'single.json')
    assert written['labels'] == one.labels.tolist()
    torch.testing.assert_close(torch.tensor(written['scores']), one.scores)
