"""Which packages the distribution holds; everything else is in ``pyproject.toml``.

The server's folder ``server/`` installs as the package ``trafficunit_server`` (setuptools'
``package_dir``), so the wheel has no top-level ``server`` package; subpackages of either
folder are found without a list to keep up to date.
"""

from setuptools import find_packages, setup

SERVER = "trafficunit_server"
library = find_packages(include=["trafficunit", "trafficunit.*"])
server = [SERVER + p[len("server") :] for p in find_packages(include=["server", "server.*"])]

setup(packages=library + server, package_dir={SERVER: "server"})
