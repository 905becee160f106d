#!/usr/bin/env bash
# Start, stop or inspect a local Docker engine for the cluster tests (tier 4).
#
#   scripts/docker-engine.sh start    install docker.io if dockerd is missing, start dockerd
#   scripts/docker-engine.sh stop     stop the dockerd this script started (and only that one)
#   scripts/docker-engine.sh status   say whether an engine answers
#
# The engine runs with `--bridge=none --iptables=false`: no default bridge and no
# NAT rules on the host. User-defined networks (`docker network create`) still
# work, and containers on them reach each other by name, which is all the cluster
# tests need. Nothing here pulls an image; see scripts/build-images.sh.
#
# Environment:
#   CONTROLPLANE_DOCKER_STATE   state directory (pid file, log); default /tmp/controlplane-docker
#   CONTROLPLANE_DOCKER_WAIT    seconds to wait for the engine to answer; default 60
set -euo pipefail

STATE_DIR="${CONTROLPLANE_DOCKER_STATE:-/tmp/controlplane-docker}"
WAIT_SECONDS="${CONTROLPLANE_DOCKER_WAIT:-60}"
PID_FILE="${STATE_DIR}/dockerd.pid"
LOG_FILE="${STATE_DIR}/dockerd.log"

log() {
    printf 'docker-engine: %s\n' "$*"
}

die() {
    printf 'docker-engine: %s\n' "$*" >&2
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

engine_answers() {
    docker info >/dev/null 2>&1
}

# kill -0 needs permission to signal; /proc only needs the process to exist.
alive() {
    [[ -d "/proc/$1" ]]
}

# The pid recorded by `start`, if that process is still a dockerd.
our_pid() {
    local pid
    [[ -f "${PID_FILE}" ]] || return 1
    pid="$(<"${PID_FILE}")"
    [[ "${pid}" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/${pid}/comm" && "$(<"/proc/${pid}/comm")" == "dockerd" ]] || return 1
    printf '%s\n' "${pid}"
}

install_engine() {
    command -v apt-get >/dev/null 2>&1 || die "dockerd is missing and apt-get is not available to install docker.io"
    log "dockerd is missing: installing Debian's docker.io"
    local started=${SECONDS}
    as_root apt-get update -qq || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null \
        || die "apt-get install docker.io failed"
    command -v dockerd >/dev/null 2>&1 || die "docker.io was installed but dockerd is still not on PATH"
    log "installed docker.io in $((SECONDS - started)) s"
}

cmd_start() {
    if engine_answers; then
        log "an engine already answers; nothing to do"
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        install_engine
    fi
    # The cluster tests cut networks (and filter UDP) inside containers with the host's
    # ip, iptables and nsenter.
    if ! command -v ip >/dev/null 2>&1 || ! command -v nsenter >/dev/null 2>&1 \
        || ! command -v iptables >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            iproute2 util-linux iptables >/dev/null \
            || die "apt-get install iproute2 util-linux iptables failed"
    fi

    mkdir -p "${STATE_DIR}"
    local pid
    if pid="$(our_pid)"; then
        log "dockerd (pid ${pid}) is starting already; waiting for it"
    else
        log "starting dockerd (log: ${LOG_FILE})"
        rm -f "${PID_FILE}"
        # setsid: the engine outlives this script and the shell that ran it.
        # dockerd writes its own pid to PID_FILE; $! is only the launcher
        # (dockerd itself, or sudo waiting for it), used to notice an early exit.
        local launcher=(setsid)
        [[ "$(id -u)" -eq 0 ]] || launcher=(sudo setsid)
        "${launcher[@]}" dockerd --bridge=none --iptables=false --pidfile "${PID_FILE}" \
            >>"${LOG_FILE}" 2>&1 </dev/null &
        pid=$!
    fi

    local deadline=$((SECONDS + WAIT_SECONDS))
    until engine_answers; do
        if ! alive "${pid}"; then
            rm -f "${PID_FILE}"
            die "dockerd exited before answering; last log line: $(tail -n 1 "${LOG_FILE}" 2>/dev/null || true)"
        fi
        if ((SECONDS >= deadline)); then
            die "dockerd (pid ${pid}) did not answer within ${WAIT_SECONDS} s; see ${LOG_FILE}"
        fi
        sleep 0.5
    done
    pid="$(our_pid || printf '%s' "${pid}")"
    log "engine ready (dockerd pid ${pid}, server $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

cmd_stop() {
    local pid
    if ! pid="$(our_pid)"; then
        rm -f "${PID_FILE}"
        log "no dockerd started by this script is running; nothing to stop"
        return 0
    fi
    log "stopping dockerd (pid ${pid})"
    as_root kill -TERM "${pid}"
    local deadline=$((SECONDS + WAIT_SECONDS))
    while alive "${pid}"; do
        if ((SECONDS >= deadline)); then
            die "dockerd (pid ${pid}) did not exit within ${WAIT_SECONDS} s"
        fi
        sleep 0.5
    done
    rm -f "${PID_FILE}"
    log "stopped"
}

cmd_status() {
    local pid
    if engine_answers; then
        if pid="$(our_pid)"; then
            log "running (started by this script, pid ${pid})"
        else
            log "running (not started by this script)"
        fi
        return 0
    fi
    log "not running"
    return 3
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    printf 'usage: %s start|stop|status\n' "${0##*/}" >&2
    exit 2
    ;;
esac
