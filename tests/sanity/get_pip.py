"""Stands in for pypa's get-pip.py, which ansible-test downloads from a host this project's CI cannot reach.

ansible-test runs it inside each new sanity virtualenv with pip's install options; this runs the pip
wheel that Python ships in ``ensurepip`` instead, which then installs the pinned pip from PyPI.
"""

import ensurepip
import glob
import os
import runpy
import sys

sys.path.insert(0, glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))[0])
# get-pip.py's own options; pip does not know them.
sys.argv = ["pip", "install", *(a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel"))]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
