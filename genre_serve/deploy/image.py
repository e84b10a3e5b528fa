"""The GPU image (deploy/Dockerfile): which NGC release it builds on, and why.

The NGC ``tritonserver`` release is the one whose Triton the nvidia-pytriton
wheel ships (the Triton every test here runs), so that what is tested here
is what the image serves: the same server, the same python backend and the
same model-control and restricted-API behaviour. NGC 24.10 carries Triton
2.51.0 on Ubuntu 22.04 with Python 3.10 and CUDA 12.6; the python backend
stub in the image is built for that Python, so genre_serve is installed
into it, its extension compiled for 3.10 and CUDA 12.6 in a builder stage.
"""

NGC_RELEASE = "24.10"
TRITON_VERSION = "2.51.0"
IMAGE_PYTHON = "3.10"
IMAGE_CUDA = "12.6"
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{NGC_RELEASE}-py3"
CUDA_DEVEL_IMAGE = "nvcr.io/nvidia/cuda:12.6.2-devel-ubuntu22.04"
# Where the image's Triton lives; the launcher runs it with its native backends.
IMAGE_TRITON_HOME = "/opt/tritonserver"
IMAGE_MODEL_REPOSITORY = "/models"
