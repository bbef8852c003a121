"""Build script: maps the top-level kernels/ folder to impresslearn.kernels."""

from setuptools import find_packages, setup

packages = find_packages(include=["impresslearn", "impresslearn.*"])

setup(
    packages=packages + ["impresslearn.kernels"],
    package_dir={"impresslearn.kernels": "kernels"},
    package_data={"impresslearn.data": ["*.npz"]},
)
