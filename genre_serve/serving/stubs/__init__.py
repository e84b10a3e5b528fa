"""Code that runs inside tritonserver's python-backend stub processes, and only
there: the ``TritonPythonModel`` classes the repository's model.py entry points
import (the module paths are in :data:`genre_serve.formats.repository.STUB_MODULES`),
the Python-based ``onnxruntime`` backend the launcher assembles, and their
response helpers. Everything here may import ``triton_python_backend_utils``,
which exists only inside a stub; nothing outside this package imports it.
"""
