"""Installation script for vovdet, an MMDetection 3.x plugin."""
import os

from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open('vovdet/version.py', encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def mim_files():
    """Paths under vovdet/ of the files vovdet/.mim links to."""
    files = ['.mim/model-index.yml']
    # through the link in a checkout, the copied folder in an sdist
    for folder, _, names in os.walk(os.path.join('vovdet', '.mim',
                                                 'configs')):
        files += [os.path.relpath(os.path.join(folder, name), 'vovdet')
                  for name in names if name.endswith(('.py', '.yml'))]
    return files


setup(
    name='vovdet',
    version=read_version(),
    description='VoVNet, RepVGG, EfficientNet backbones, OSA-FPN necks, '
    'RefineDet and DSOD detectors for MMDetection 3.x',
    long_description=open('README.md', encoding='utf-8').read()
    if os.path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=('vovdet', 'vovdet.*')),
    # vovdet/.mim links to configs/ and model-index.yml (mmdet's layout for
    # configs in the package, read by mmengine and openmim); a wheel or an
    # sdist stores the linked files themselves. An editable install uses
    # the links, so the checkout's configs are the package's.
    package_data={'vovdet': mim_files()},
    python_requires='>=3.8',
    install_requires=[
        'mmengine>=0.10.7,<1.0',
        'mmcv>=2.1.0,<2.2.0',
        'mmdet>=3.3.0,<3.4.0',
        'pycocotools',
        'numpy',
    ],
    extras_require={
        # energy per image on NVIDIA GPUs (NVML) and the benchmark plots
        'benchmark': ['nvidia-ml-py', 'matplotlib'],
        # ONNX export and ONNX Runtime (vovdet.deploy.onnx, docs/deploy.md);
        # tested with onnx 1.23.2 and onnxruntime 1.32.0
        'deploy': ['onnx>=1.16', 'onnxruntime>=1.18'],
    },
    license='Apache-2.0',
    zip_safe=False,
)
