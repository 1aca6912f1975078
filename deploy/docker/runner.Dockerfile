# syntax=docker/dockerfile:1
# The GPU runner image: CUDA userspace, torch, ms-swift, EvalScope and the tunebot agent, plus the GitHub Actions
# runner, so one image serves three ways:
#   1. a one-off job:  docker run --gpus all -v "$PWD/job:/job" tunebot-runner --job /job/job.json --out /job/out
#   2. an ARC runner scale set pod (deploy/k8s/arc/values.yaml sets the command to /home/runner/run.sh);
#   3. a long-lived self-hosted runner: docker run --gpus all tunebot-runner ... with the entrypoint replaced by
#      /home/runner/config.sh + run.sh (see deploy/README.md, "Self-hosted runner").
#
# Build from the repository root (needs network access to PyPI and the PyTorch index):
#   docker build -f deploy/docker/runner.Dockerfile -t tunebot-runner:0.1.0 .
#
# The CUDA base only has to provide the userspace libraries matching TORCH_INDEX; the host needs an NVIDIA driver
# new enough for that CUDA release (12.8 needs driver >= 570) and the NVIDIA container toolkit.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
# The official runner image is only a source for the runner files; 2.327.1+ runs the node24 actions we pin.
ARG RUNNER_IMAGE=ghcr.io/actions/actions-runner:2.329.0

FROM ${RUNNER_IMAGE} AS actions-runner

FROM ${CUDA_IMAGE}
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/tunebot/bin:$PATH \
    # Model and dataset caches on one mount point, so a volume keeps downloads between ephemeral runners.
    # TUNEBOT_BENCH_DATA holds the CMMLU / C-Eval source files (cmmlu/, ceval/; see deploy/README.md).
    # Only the agent's fetch phase writes them: ms-swift and EvalScope run confined to their run's scratch space
    # (Landlock), with per-run HF/ModelScope/EvalScope caches there; a kernel that cannot confine them makes the
    # agent refuse the job (TUNEBOT_TOOL_SANDBOX=require; deploy/README.md, Threat model).
    TUNEBOT_TOOL_SANDBOX=require \
    TUNEBOT_CACHE=/cache/tunebot \
    TUNEBOT_BENCH_DATA=/cache/benchmarks \
    HF_HOME=/cache/huggingface \
    MODELSCOPE_CACHE=/cache/modelscope \
    EVALSCOPE_CACHE=/cache/evalscope \
    MPLCONFIGDIR=/tmp/matplotlib

# git: checkout of the approved commit; python3-venv: the agent's venv; build-essential + python3-dev: Triton
# compiles its launchers at run time; tini: see ENTRYPOINT. No sudo: a job must not become root. The runner's own
# dependencies (libicu...) come from its installdependencies.sh below. Versions follow the base image, which
# CUDA_IMAGE pins (pin it by digest for reproducible builds); Ubuntu's archive drops old versions, so exact
# package pins would only break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git git-lfs python3 python3-venv python3-dev \
      build-essential tini \
 && rm -rf /var/lib/apt/lists/*

# The runner user matches the official actions-runner image (uid 1001), which ARC's defaults expect.
RUN useradd --create-home --uid 1001 --shell /bin/bash runner \
 && mkdir -p /cache /home/runner/_work \
 && chown -R runner:runner /cache /home/runner
COPY --from=actions-runner --chown=runner:runner /home/runner /home/runner
RUN /home/runner/bin/installdependencies.sh && rm -rf /var/lib/apt/lists/*

# torch first, from the CUDA index and pinned: an unpinned torch from PyPI would pick its own CUDA build.
RUN python3 -m venv /opt/tunebot \
 && /opt/tunebot/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tunebot ./tunebot
COPY bot ./bot
COPY commands ./commands
COPY configs ./configs
COPY runner_agent ./runner_agent
# A constraint keeps the agent extra from replacing the CUDA torch installed above.
RUN echo "torch==${TORCH_VERSION}" > /tmp/torch-constraint.txt \
 && /opt/tunebot/bin/pip install --no-cache-dir -c /tmp/torch-constraint.txt ".[agent]" \
 && /opt/tunebot/bin/tunebot --version \
 && rm -rf /src /tmp/torch-constraint.txt

# The job-started hook: the runner runs it before every job and fails any job that is not tunebot's own workflow on
# the default branch (a runner label is not a permission: any workflow, a fork PR's included, can ask for it).
COPY deploy/docker/runner-job-started.sh /opt/tunebot-runner/job-started.sh
RUN chmod 0555 /opt/tunebot-runner/job-started.sh
ENV ACTIONS_RUNNER_HOOK_JOB_STARTED=/opt/tunebot-runner/job-started.sh

USER 1001:1001
WORKDIR /home/runner
VOLUME ["/cache"]
# tini reaps the training subprocesses' children and forwards SIGTERM, so a cancelled run stops cleanly.
ENTRYPOINT ["/usr/bin/tini", "--", "tunebot", "agent", "run"]
CMD ["--help"]
