"""The on-disk formats of genre_serve, each with one owner that writes and reads it.

- :mod:`genre_serve.formats.repository`: the Triton model repository (model and
  tensor names, file names, every version artifact). Torch-free: the client,
  the python-backend stubs and the checks read it without model code.
- :mod:`genre_serve.formats.run_dir`: a training run directory (the PyTorch model
  and its split), written by ``train`` and read by evaluation and export.

Nothing is imported here, so importing the repository format loads no torch.
"""
