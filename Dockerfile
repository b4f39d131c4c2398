# syntax=docker/dockerfile:1
# One image for every framequeue process; the command picks which (see the Procfile):
#   docker run framequeue:cpu api --host 0.0.0.0 --port 8000
#   docker run framequeue:cpu worker --stages prompt_enhance,video,safety_check,upload
#
# CPU by default. The CUDA variant takes torch from PyTorch's CUDA index instead; its wheels
# bring their own CUDA runtime, so the same slim base serves a GPU host (with the NVIDIA
# container toolkit):
#   docker build -t framequeue:cpu .
#   docker build --build-arg TORCH_VARIANT=cu128 -t framequeue:cuda .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm

#: ``cpu``, or a CUDA build of PyTorch's index (``cu126``, ``cu128``...) that has this torch version.
ARG TORCH_VARIANT=cpu
#: Kept equal to pyproject.toml's pin, so that installing the project leaves this torch in place.
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FRAMEQUEUE_DATA_DIR=/data \
    HF_HOME=/data/huggingface

RUN groupadd --system --gid 10001 framequeue \
    && useradd --system --uid 10001 --gid framequeue --create-home --home-dir /home/framequeue framequeue \
    && install -d -o framequeue -g framequeue /data

WORKDIR /app

# torch first, from PyTorch's own index: from PyPI, torch brings gigabytes of CUDA wheels even
# for a CPU image.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md ./
COPY queue_config ./queue_config
COPY storage ./storage
COPY pipelines ./pipelines
COPY workers ./workers
RUN pip install . && python -c "import torch, workers.cli; print('torch', torch.__version__)"

USER framequeue
# The embedded Redis and local storage are for one machine: a container is given REDIS_URL and
# an S3 endpoint. /data holds the model cache (mount a volume to keep it across restarts).
VOLUME ["/data"]
EXPOSE 8000
ENTRYPOINT ["framequeue"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
