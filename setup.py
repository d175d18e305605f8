"""Build configuration beyond pyproject.toml: the optional C tree walk.

``bridge.trees._walk`` (see ``bridge/trees/_walk.c``) is built when a C compiler is present
and skipped otherwise (``optional=True``): bridge then walks trees with torch operations.
It uses only Python's C API, so one build serves every torch version.
"""

import sys

from setuptools import Extension, setup

flags = [] if sys.platform == "win32" else ["-O3"]
setup(ext_modules=[Extension("bridge.trees._walk", ["bridge/trees/_walk.c"],
                             extra_compile_args=flags, optional=True)])
