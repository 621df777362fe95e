"""Packaging that pyproject.toml cannot say alone: the top-level conf/ (Hydra configs) and
sweeps/ (presets) ship inside the package as scaling/conf/ and scaling/conf/sweeps/, where
scaling.config.CONF_DIR finds them in an installed wheel."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["scaling", "scaling.*"]),
        "scaling.conf",
        "scaling.conf.sweeps",
    ],
    package_dir={"scaling.conf": "conf", "scaling.conf.sweeps": "sweeps"},
    package_data={
        "scaling.conf": ["*.yaml", "*.json", "*/*.yaml", "*/*/*.yaml"],
        "scaling.conf.sweeps": ["*.yaml"],
    },
)
