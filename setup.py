"""pip install for machines without ROS (training servers): the pure-Python library and the
`egopress` console command. ROS users build the package with colcon instead (see README)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements() -> list[str]:
    lines = (HERE / "requirements" / "core.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="egopress",
    version="0.1.0",
    description="Hand-pressure estimation from egocentric RGB-D video (EgoPressDiff).",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["egopress_core", "egopress_core.*"]),
    package_data={"egopress_core": ["assets/**/*"]},
    include_package_data=True,
    install_requires=_requirements(),
    # The training configs, where `egopress train --config NAME` looks for them after a pip install.
    data_files=[("share/egopress/config", [str(p.relative_to(HERE)) for p in sorted((HERE / "config").glob("*.yaml"))])],
    entry_points={"console_scripts": ["egopress = egopress_core.cli.main:main"]},
)
