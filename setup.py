"""Installation script for vovdet, an MMDetection 3.x plugin."""
from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open('vovdet/version.py', encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='vovdet',
    version=read_version(),
    description='VoVNet, RepVGG, EfficientNet backbones, OSA-FPN necks, '
    'RefineDet and DSOD detectors for MMDetection 3.x',
    long_description=open('README.md', encoding='utf-8').read()
    if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=('vovdet', 'vovdet.*')),
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
    },
    license='Apache-2.0',
    zip_safe=False,
)
