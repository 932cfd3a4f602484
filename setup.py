"""nasr: neural architecture search recipes for speech."""
from setuptools import find_packages, setup

# torch is deliberately not listed: an unpinned `torch` requirement makes pip pull a
# multi-GB CUDA build on a CPU machine.  The Makefile installs the pinned wheel first
# (TORCH=torch==2.13.0 by default); any already-installed torch satisfies the code.
install_requires = [
    "numpy",
    "scipy",
    "soundfile",
    "kaldi-native-fbank",
    "kaldiio",
    "sentencepiece",
    "kaldifst",
    "kaldi-decoder",
    "kaldilm",
    "kaldialign",
    "espeakng-loader",
    "pypinyin",
    "wordfreq",
    "pyyaml",
    "tqdm",
    "tensorboard",
    "matplotlib",
    "optuna",  # tower search: TPE tuning of lr, dropout and batch size (nasr.tower.tune)
]

setup(
    name="nasr",
    version="0.1.0",
    description="Kaldi/ESPnet-style recipes for neural architecture search in speech",
    packages=find_packages(include=["nasr", "nasr.*"]),
    python_requires=">=3.11",  # tested with 3.11.7 only; the numpy, scipy, matplotlib installed here need it
    install_requires=install_requires,
    extras_require={
        # pgserver: a PostgreSQL server from a wheel, for the tests of the tower search's server store
        # onnx + onnxruntime: nasr.bin.export writes ONNX (torch's TorchScript exporter) and checks
        # it against torch (tested with onnx 1.23.2, onnxruntime 1.32.0); the tests run the check
        "test": ["pytest", "pytest-timeout", "pgserver", "psycopg[binary]", "onnx>=1.17", "onnxruntime>=1.20"],
        "deploy": ["onnx>=1.17", "onnxruntime>=1.20"],
        "server": ["psycopg[binary]"],  # the tower search's store on a PostgreSQL server (--store postgresql://)
    },
)
