# syntax=docker/dockerfile:1
# dnssec-sidecar container images.
#
#   docker build -t dnssec-sidecar:0.1.0 .                                  # the resolver
#   docker build --target netinit -t dnssec-sidecar-netinit:0.1.0 .         # k8s init steps
#
# The resolver image (the last stage, "runtime") has no compiler and runs as UID/GID 10053 with
# a read-only root filesystem in mind: it writes nothing when its log goes to standard output.
# Its entry point: dnssec-sidecar serve --config /etc/dnssec-sidecar/config.yaml (mount the
# configuration directory there; k8s/ does).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the wheel with the compiled Cython extension, and the dependencies' wheels -------
FROM ${PYTHON_IMAGE} AS builder
# zlib and OpenSSL's headers: the forensic log's gzip stream and SHA-256 are called from C
# (resolver/forensic/_queue.pyx, _fastlog.pyx); the runtime image has both libraries (Python's).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential zlib1g-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY resolver ./resolver
RUN pip wheel --no-cache-dir . -w /wheels

# --- netinit: iptables and ip for the Kubernetes init containers (k8s/capture/dns-capture.sh,
# k8s/overlays/node-unenforced/link-local.sh); the scripts themselves come from ConfigMaps. ---
FROM debian:bookworm-slim AS netinit
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/bin/sh"]

# --- runtime: the resolver ---------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The wheels are mounted from the builder for this step only: no layer keeps them.
# setcap: CAP_NET_BIND_SERVICE as a file capability of the interpreter, so that the non-root
# process keeps it across exec when the container is given it (capabilities add
# NET_BIND_SERVICE, with allowPrivilegeEscalation: false) - it binds port 53 and nothing more.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels dnssec-sidecar \
 && apt-get update \
 && apt-get install -y --no-install-recommends libcap2-bin \
 && setcap cap_net_bind_service=+ep "$(readlink -f /usr/local/bin/python3)" \
 && apt-get purge -y --auto-remove libcap2-bin \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10053 dnssec-sidecar \
 && useradd --system --uid 10053 --gid 10053 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin dnssec-sidecar \
 && mkdir -p /etc/dnssec-sidecar
USER 10053:10053
EXPOSE 53/udp 53/tcp 9153/tcp
ENTRYPOINT ["dnssec-sidecar"]
CMD ["serve", "--config", "/etc/dnssec-sidecar/config.yaml"]
