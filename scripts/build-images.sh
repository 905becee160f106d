#!/usr/bin/env bash
# Build the container images used by the cluster tests (tier 4), without pulling.
#
#   scripts/build-images.sh [--base IMAGE] [--tag NAME]
#
# 1. A base image, controlplane-base:<hash>: a minimal Debian root file system made
#    with debootstrap from the Debian packages this machine's apt already uses,
#    then `docker import`ed. The tag is a hash of the recipe (suite, variant,
#    package list, architecture, recipe version); when that image exists the step
#    is skipped. `--base IMAGE` skips it and builds on IMAGE instead (for example
#    python:3.11-slim where images can be pulled).
# 2. Wheels, built on the host into a temporary directory: the two distributions
#    (`clients/python` and `.`) and, at the versions installed in .venv, every
#    runtime dependency, as wheels for CPython 3.11 on this architecture. The
#    image build then needs no network.
# 3. The project image from the repository's Dockerfile:
#    `docker build --network none --build-arg BASE_IMAGE=... -t controlplane:test`.
#
# Needs a running engine (scripts/docker-engine.sh start) and .venv (make venv).
#
# Environment:
#   CONTROLPLANE_DEBIAN_MIRROR   Debian archive URL for debootstrap; default: the one
#                                apt uses for the suite, read from /etc/apt/sources.list*
#   CONTROLPLANE_IMAGE           project image name; default controlplane:test
#   PYTHON                       host Python with pip; default .venv/bin/python
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Base image recipe. Any change here changes the tag, so a stale base is never reused.
RECIPE_VERSION=1
SUITE=bookworm
VARIANT=minbase
# python3-venv brings ensurepip's bundled pip; the HEALTHCHECK is a Python one-liner
# over the installed client, so it needs nothing beyond python3.
BASE_PACKAGES=(python3 python3-venv python3-pip)
# Debian bookworm's python3 is CPython 3.11; the wheels must match it.
IMAGE_PYTHON_VERSION=3.11

BASE_REPO=controlplane-base
IMAGE="${CONTROLPLANE_IMAGE:-controlplane:test}"
PYTHON="${PYTHON:-${ROOT}/.venv/bin/python}"
BASE_OVERRIDE=""

log() {
    printf 'build-images: %s\n' "$*"
}

die() {
    printf 'build-images: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "must run as root (or with sudo available) to: $*"
    fi
}

usage() {
    printf 'usage: %s [--base IMAGE] [--tag NAME]\n' "${0##*/}" >&2
    exit 2
}

while (($#)); do
    case "$1" in
    --base)
        (($# >= 2)) || usage
        BASE_OVERRIDE="$2"
        shift 2
        ;;
    --tag)
        (($# >= 2)) || usage
        IMAGE="$2"
        shift 2
        ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
done

docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/docker-engine.sh start"
[[ -x "${PYTHON}" ]] || die "${PYTHON} not found; run make venv (or set PYTHON)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/controlplane-images.XXXXXX")"
cleanup() {
    if [[ -d "${WORK}/rootfs" ]]; then
        as_root rm -rf "${WORK}/rootfs"
    fi
    rm -rf "${WORK}"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# Base image
# ---------------------------------------------------------------------------

deb_arch() {
    if command -v dpkg >/dev/null 2>&1; then
        dpkg --print-architecture
    else
        case "$(uname -m)" in
        x86_64) echo amd64 ;;
        aarch64) echo arm64 ;;
        *) uname -m ;;
        esac
    fi
}

base_tag() {
    local recipe
    recipe="recipe=${RECIPE_VERSION} suite=${SUITE} variant=${VARIANT} arch=$(deb_arch)"
    recipe+=" packages=$(printf '%s\n' "${BASE_PACKAGES[@]}" | LC_ALL=C sort -u | paste -sd, -)"
    printf '%s' "${recipe}" | sha256sum | cut -c1-16
}

# Prints "URI<TAB>KEYRING" for the first enabled apt source of type deb that
# serves exactly ${SUITE} with component main, in apt's own reading order
# (sources.list, then sources.list.d/*.list and *.sources). KEYRING is the
# entry's Signed-By file, or empty.
apt_mirror() {
    local files=()
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    local f
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "${f}" ]] && files+=("${f}")
    done
    ((${#files[@]})) || return 1
    awk -v suite="${SUITE}" '
        function has(list, word,    n, i, parts) {
            n = split(list, parts, /[ \t]+/)
            for (i = 1; i <= n; i++) if (parts[i] == word) return 1
            return 0
        }
        function flush() {
            if (p_types != "" && has(p_types, "deb") && has(p_suites, suite) \
                && has(p_comps, "main") && tolower(p_enabled) != "no" && p_uri != "" && !found) {
                printf "%s\t%s\n", p_uri, p_signed
                found = 1
            }
            p_types = p_uris = p_suites = p_comps = p_enabled = p_signed = p_uri = ""
        }
        FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
        /^[ \t]*#/ { next }
        deb822 {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 !~ /^[A-Za-z-]+:/) next
            key = tolower(substr($0, 1, index($0, ":") - 1))
            val = substr($0, index($0, ":") + 1)
            gsub(/^[ \t]+|[ \t]+$/, "", val)
            if (key == "types") p_types = val
            else if (key == "uris") { p_uris = val; split(val, u, /[ \t]+/); p_uri = u[1] }
            else if (key == "suites") p_suites = val
            else if (key == "components") p_comps = val
            else if (key == "enabled") p_enabled = val
            else if (key == "signed-by" && val ~ /^\//) p_signed = val
            next
        }
        $1 == "deb" {
            line = $0
            opts = ""
            if (match(line, /\[[^]]*\]/)) {
                opts = substr(line, RSTART + 1, RLENGTH - 2)
                line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH)
            }
            n = split(line, w, /[ \t]+/)
            signed = ""
            if (match(opts, /signed-by=[^ \t]+/)) signed = substr(opts, RSTART + 10, RLENGTH - 10)
            comps = ""
            for (i = 4; i <= n; i++) comps = comps " " w[i]
            if (w[3] == suite && has(comps, "main") && !found) {
                printf "%s\t%s\n", w[2], signed
                found = 1
            }
        }
        END { flush(); exit(found ? 0 : 1) }
    ' "${files[@]}"
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "debootstrap is missing and apt-get is not available to install it"
    log "installing debootstrap"
    as_root apt-get update -qq || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
        || die "apt-get install debootstrap failed"
}

build_base() {
    local image="$1"
    local mirror keyring="" source
    if [[ -n "${CONTROLPLANE_DEBIAN_MIRROR:-}" ]]; then
        mirror="${CONTROLPLANE_DEBIAN_MIRROR}"
    elif source="$(apt_mirror)"; then
        mirror="${source%%$'\t'*}"
        keyring="${source#*$'\t'}"
    else
        die "no apt source for Debian ${SUITE} (main) in /etc/apt/sources.list*; set CONTROLPLANE_DEBIAN_MIRROR"
    fi
    ensure_debootstrap

    local include rootfs="${WORK}/rootfs" started=${SECONDS}
    include="$(printf '%s\n' "${BASE_PACKAGES[@]}" | paste -sd, -)"
    local args=(--variant="${VARIANT}" --include="${include}" --arch="$(deb_arch)")
    [[ -n "${keyring}" && -f "${keyring}" ]] && args+=(--keyring="${keyring}")
    log "debootstrap ${SUITE} (${VARIANT} + ${include})"
    as_root debootstrap "${args[@]}" "${SUITE}" "${rootfs}" "${mirror}" >"${WORK}/debootstrap.log" 2>&1 || {
        tail -n 20 "${WORK}/debootstrap.log" >&2
        die "debootstrap failed (log above)"
    }
    # The image never runs apt: drop package caches and lists, and the apt sources,
    # which name this machine's mirror.
    as_root rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/* \
        "${rootfs}"/var/cache/debconf/*-old "${rootfs}"/var/log/* \
        "${rootfs}"/usr/share/doc/* "${rootfs}"/usr/share/man/* "${rootfs}"/usr/share/info/* \
        "${rootfs}"/etc/apt/sources.list "${rootfs}"/etc/apt/sources.list.d/*
    log "debootstrap done in $((SECONDS - started)) s; importing ${image}"

    local imported=${SECONDS}
    as_root tar --numeric-owner -C "${rootfs}" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.opencontainers.image.title=${BASE_REPO} io.controlplane.base.suite=${SUITE}" \
        --message "debootstrap ${SUITE} ${VARIANT} + ${include}" \
        - "${image}" >/dev/null
    log "imported ${image} in $((SECONDS - imported)) s"
}

if [[ -n "${BASE_OVERRIDE}" ]]; then
    BASE_IMAGE="${BASE_OVERRIDE}"
    log "base image: ${BASE_IMAGE} (given)"
else
    BASE_IMAGE="${BASE_REPO}:$(base_tag)"
    if docker image inspect "${BASE_IMAGE}" >/dev/null 2>&1; then
        log "base image ${BASE_IMAGE} exists; skipping debootstrap"
    else
        base_started=${SECONDS}
        build_base "${BASE_IMAGE}"
        log "base image built in $((SECONDS - base_started)) s"
    fi
fi

# ---------------------------------------------------------------------------
# Wheels
# ---------------------------------------------------------------------------

wheels_started=${SECONDS}
CONTEXT="${WORK}/context"
WHEELS="${CONTEXT}/dist/wheels"
mkdir -p "${WHEELS}"
log "building wheels of controlplane-client and controlplane"
"${PYTHON}" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "${WHEELS}" \
    "${ROOT}/clients/python" "${ROOT}" || die "pip wheel of the two distributions failed"

# Runtime dependencies of the two wheels, pinned to the versions installed in the
# host environment (the ones the other test tiers run against).
"${PYTHON}" - "${WHEELS}" >"${WORK}/requirements.txt" <<'PY' || die "cannot resolve runtime dependencies from .venv (run make venv)"
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ours: dict[str, list[str]] = {}
for wheel in Path(sys.argv[1]).glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(name).decode())
    ours[canonicalize_name(meta["Name"])] = meta.get_all("Requires-Dist") or []

pins: dict[str, str] = {}
todo = [req for reqs in ours.values() for req in reqs]
while todo:
    req = Requirement(todo.pop())
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    name = canonicalize_name(req.name)
    if name in ours or name in pins:
        continue
    dist = metadata.distribution(req.name)
    if not req.specifier.contains(dist.version, prereleases=True):
        sys.exit(f"{req.name} {dist.version} in .venv does not satisfy {req}")
    pins[name] = dist.version
    todo.extend(dist.requires or [])
for name, version in sorted(pins.items()):
    print(f"{name}=={version}")
PY

machine="$(uname -m)"
# pip does not widen an explicit --platform to older manylinux levels: list them
# all, up to bookworm's glibc 2.36.
platforms=()
for ((minor = 36; minor >= 5; minor--)); do
    platforms+=(--platform "manylinux_2_${minor}_${machine}")
done
platforms+=(--platform "manylinux2014_${machine}" --platform "manylinux2010_${machine}"
    --platform "manylinux1_${machine}" --platform "linux_${machine}")
log "fetching $(wc -l <"${WORK}/requirements.txt") runtime dependencies as cp${IMAGE_PYTHON_VERSION/./} ${machine} wheels"
"${PYTHON}" -m pip download -qq --no-deps --only-binary=:all: \
    --python-version "${IMAGE_PYTHON_VERSION}" --implementation cp \
    "${platforms[@]}" \
    --dest "${WHEELS}" -r "${WORK}/requirements.txt" || die "pip download of the runtime dependencies failed"
log "wheels ready in $((SECONDS - wheels_started)) s: $(find "${WHEELS}" -name '*.whl' | wc -l) files"

# ---------------------------------------------------------------------------
# Project image
# ---------------------------------------------------------------------------

cp "${ROOT}/.dockerignore" "${CONTEXT}/.dockerignore"
image_started=${SECONDS}
log "docker build ${IMAGE} FROM ${BASE_IMAGE} (no network)"
docker build --quiet --network none --pull=false \
    --build-arg "BASE_IMAGE=${BASE_IMAGE}" \
    -f "${ROOT}/Dockerfile" -t "${IMAGE}" "${CONTEXT}" >"${WORK}/build.log" 2>&1 || {
    tail -n 30 "${WORK}/build.log" >&2
    die "docker build of ${IMAGE} failed (log above)"
}
log "built ${IMAGE} in $((SECONDS - image_started)) s"

printf 'BASE_IMAGE=%s\n' "${BASE_IMAGE}"
printf 'IMAGE=%s\n' "${IMAGE}"
