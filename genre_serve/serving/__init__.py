"""Serving: what answers a recommend request, and the server process.

- ``recommend_logic.py``: request parsing, id mapping, the cold-user answer,
  retrieval over a version's item tables and the final order; shared by the
  Triton model, the in-process pipeline and client-side scoring.
- ``pipeline.py``: the same flow in process on a training run's PyTorch model
  (what the served answers are compared with).
- ``launcher.py``: starts and stops ``tritonserver`` (runs in the CLI).
- ``stubs/``: runs only inside Triton's python-backend stub processes.
"""
