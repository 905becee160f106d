# The controlplane agent.
#
# The build context holds pre-built wheels in dist/wheels/: both distributions
# (controlplane-client and controlplane) and all their runtime dependencies, so
# the build itself needs no network. scripts/build-images.sh prepares such a
# context; by hand, from the repository root:
#
#   python -m pip wheel --wheel-dir dist/wheels ./clients/python .
#   docker build -t controlplane .
#
# BASE_IMAGE is any Debian-like image with CPython 3.11 as `python3` and the venv
# module: the official python:3.11-slim, or the debootstrap base that
# scripts/build-images.sh imports where nothing can be pulled.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG WHEELS=dist/wheels
ENV VIRTUAL_ENV=/opt/controlplane \
    PATH=/opt/controlplane/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY ${WHEELS}/ /tmp/wheels/

# A venv, not the system interpreter: Debian's python3 refuses system-wide pip
# installs (PEP 668). Only wheels from the context; no index, no cache.
RUN python3 -m venv "${VIRTUAL_ENV}" \
    && "${VIRTUAL_ENV}/bin/python" -m pip install --no-cache-dir --no-index \
        --disable-pip-version-check --find-links /tmp/wheels controlplane \
    && rm -rf /tmp/wheels \
    && "${VIRTUAL_ENV}/bin/controlplane" agent --help >/dev/null \
    && groupadd --system --gid 10001 controlplane \
    && useradd --system --uid 10001 --gid controlplane --home-dir /var/lib/controlplane \
        --create-home --shell /usr/sbin/nologin controlplane

# Numeric, so that runtimes enforcing "run as non-root" can check it.
USER 10001:10001
WORKDIR /var/lib/controlplane

# Gossip (UDP) and gRPC (TCP) share one port.
EXPOSE 7946/tcp 7946/udp

# grpc.health.v1.Health/Check through the installed client. The agent must answer
# on 127.0.0.1:7946 (bind 0.0.0.0, the default below); with another bind address
# or port, set CONTROLPLANE_HEALTH_TARGET (host:port) to match.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/opt/controlplane/bin/python", "-c", "import os, sys, grpc\nfrom controlplane.client.health import HealthStatus, check_health\ntarget = os.environ.get('CONTROLPLANE_HEALTH_TARGET', '127.0.0.1:7946')\ntry:\n    with grpc.insecure_channel(target) as channel:\n        status = check_health(channel, service='', timeout=2.0)\nexcept grpc.RpcError as error:\n    sys.exit(f'{target}: {error.code().name}')\nsys.exit(0 if status == HealthStatus.SERVING else f'{target}: {status.name}')"]

ENTRYPOINT ["controlplane", "agent"]
CMD ["--bind", "0.0.0.0"]
