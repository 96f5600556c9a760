#!/usr/bin/env bash
# shellcheck shell=bash
# A Docker engine for tests/containers, and the project's images built on it.
#
# Sourced by scripts/test (after _setup.sh), which then calls `roleswap_docker_setup`.
# Also runnable on its own:  scripts/_docker.sh run CMD...   (engine up, images built,
# CMD run with the environment below, everything torn down; exit status of CMD).
#
# What roleswap_docker_setup does, in order:
#   1. ROLESWAP_DOCKER=0: container tests are skipped (ROLESWAP_DOCKER_SKIP says why).
#   2. An engine already answers (`docker info` against DOCKER_HOST or the default
#      socket): it is used as it is; nothing is started, and only what our tests
#      labelled is removed afterwards.
#   3. Not root and no engine: nothing can be done; ROLESWAP_DOCKER_SKIP says why.
#   4. Root: `apt-get install docker.io debootstrap` if missing, then a PRIVATE dockerd
#      (shared/notes/docker-facts.md): its own socket, exec-root and pidfile in a
#      temporary directory, its image store in ~/.cache/roleswap/docker/data so later
#      runs on this machine reuse the images; iptables OFF (with it on, dockerd sets the
#      FORWARD policy to DROP and breaks every other bridge on the machine, the hosts
#      lab's included); default bridge 198.19.240.1/24, networks from 198.19.248.0/21.
#   5. A Compose v2 CLI plugin if `docker compose` is missing: Debian trixie's
#      docker-compose package, fetched with a PRIVATE apt state (the system's apt
#      sources, lists, cache and dpkg status are not touched) into the cache, linked
#      into a private DOCKER_CONFIG/cli-plugins.
#   6. docker/build: every image (a second run reuses the cache); ROLESWAP_DOCKER_BUILD=0
#      skips it.
# It exports DOCKER_HOST, DOCKER_CONFIG (when a compose plugin was provided),
# TESTCONTAINERS_RYUK_DISABLED / _CONNECTION_MODE / _HOST_OVERRIDE (private engine),
# ROLESWAP_DOCKER_REQUIRED=1 (the engine and images are there: the tests must not
# skip), or ROLESWAP_DOCKER_SKIP="reason" / ROLESWAP_DOCKER_ERROR="reason" (the tests
# skip / fail with that reason).  On exit (also failure, Ctrl-C, SIGTERM) a trap removes
# every container, network and volume of the private engine, stops dockerd by its
# pidfile PID, deletes the bridges it created, unmounts what it left mounted and
# leaves no process behind.

_RSD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_RSD_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/roleswap/docker"
# Compose v2 from Debian's stable release (a static Go program; only libc6 >= 2.34).
_RSD_COMPOSE_SUITE="${ROLESWAP_COMPOSE_SUITE:-trixie}"
_RSD_MIRROR="${ROLESWAP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
_RSD_RUN=""            # the private engine's temporary directory ("" = none started)
_RSD_PID=""            # dockerd's PID, from its own pidfile
_RSD_LOCK_FD=""
_RSD_HAD_DOCKER0=0
_RSD_BRIDGES_BEFORE=""
_RSD_TORN_DOWN=0
_RSD_CFG_TMP=""       # a private DOCKER_CONFIG when the engine is not ours

_rsd_say() { echo "docker: $*"; }
_rsd_now() { echo "${EPOCHREALTIME/,/.}"; }
_rsd_since() { awk -v a="$1" -v b="$(_rsd_now)" 'BEGIN { printf "%.1f", b - a }'; }

_rsd_engine_answers() {
  # A bounded wait: a dead TCP DOCKER_HOST would otherwise hang for a long time.
  timeout 15 docker info >/dev/null 2>&1
}

_rsd_skip() {
  export ROLESWAP_DOCKER_SKIP="$1"
  _rsd_say "container tests will be SKIPPED: $1"
}

_rsd_error() {
  export ROLESWAP_DOCKER_ERROR="$1"
  _rsd_say "ERROR: $1 (the container tests will fail with this reason)" >&2
}

# -- packages -----------------------------------------------------------------------
_rsd_install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
  [ "${#missing[@]}" -gt 0 ] || return 0
  local t0; t0=$(_rsd_now)
  _rsd_say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  # no systemd here: the package's units are not started; we start our own dockerd
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  _rsd_say "installed ${missing[*]} in $(_rsd_since "$t0") s"
}

# -- the private engine ----------------------------------------------------------------
_rsd_bridges() { ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; }

_rsd_start_engine() {
  local t0; t0=$(_rsd_now)
  mkdir -p "$_RSD_CACHE/data"
  # One dockerd per image store: a second one on the same data-root would block on (or
  # corrupt) its databases.  The lock is held by this shell and by dockerd (inherited).
  exec {_RSD_LOCK_FD}>"$_RSD_CACHE/data.lock"
  if ! flock -n "$_RSD_LOCK_FD"; then
    _rsd_say "another private engine uses $_RSD_CACHE/data; waiting for it (at most ${ROLESWAP_DOCKER_LOCK_WAIT:-900} s)"
    if ! flock -w "${ROLESWAP_DOCKER_LOCK_WAIT:-900}" "$_RSD_LOCK_FD"; then
      _rsd_error "the private engine's image store $_RSD_CACHE/data stayed locked by another run"
      return 1
    fi
  fi
  _RSD_RUN="$(mktemp -d /tmp/roleswap-docker.XXXXXX)"
  mkdir -p "$_RSD_RUN/run" "$_RSD_RUN/exec"
  ip link show docker0 >/dev/null 2>&1 && _RSD_HAD_DOCKER0=1
  _RSD_BRIDGES_BEFORE="$(_rsd_bridges)"
  cat >"$_RSD_RUN/daemon.json" <<EOF
{
  "hosts": ["unix://$_RSD_RUN/run/docker.sock"],
  "data-root": "$_RSD_CACHE/data",
  "exec-root": "$_RSD_RUN/exec",
  "pidfile": "$_RSD_RUN/run/dockerd.pid",
  "storage-driver": "overlay2",
  "bip": "198.19.240.1/24",
  "default-address-pools": [{"base": "198.19.248.0/21", "size": 24}],
  "mtu": 1400,
  "iptables": false, "ip6tables": false, "ip-forward": false, "ip-masq": false, "ipv6": false
}
EOF
  # setsid: dockerd and its containerd get their own session, so a Ctrl-C aimed at the
  # test run does not kill the engine before the trap has removed the containers.
  setsid /usr/sbin/dockerd --config-file "$_RSD_RUN/daemon.json" \
    >"$_RSD_RUN/dockerd.log" 2>&1 </dev/null &
  export DOCKER_HOST="unix://$_RSD_RUN/run/docker.sock"
  local _
  for _ in $(seq 1 300); do
    [ -z "$_RSD_PID" ] && [ -s "$_RSD_RUN/run/dockerd.pid" ] && _RSD_PID="$(cat "$_RSD_RUN/run/dockerd.pid")"
    if [ -n "$_RSD_PID" ] && timeout 5 docker info >/dev/null 2>&1; then
      _rsd_say "private engine up in $(_rsd_since "$t0") s (dockerd $(/usr/sbin/dockerd --version | awk '{print $3}' | tr -d ,)" \
        "pid $_RSD_PID, $DOCKER_HOST, images in $_RSD_CACHE/data)"
      return 0
    fi
    sleep 0.1
  done
  _rsd_error "the private dockerd did not answer within 30 s; its log: $(tail -n 5 "$_RSD_RUN/dockerd.log" | tr '\n' ' ')"
  return 1
}

_rsd_kill_pid() {  # PID SECONDS: SIGTERM, wait, then SIGKILL
  local pid="$1" wait_s="$2" _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((wait_s * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

_rsd_stop_engine() {
  [ -n "$_RSD_RUN" ] || return 0
  local t0; t0=$(_rsd_now)
  if [ -n "$_RSD_PID" ] && kill -0 "$_RSD_PID" 2>/dev/null; then
    # Everything on this engine is ours (its own image store): containers, networks and
    # volumes go; images stay as the next run's cache.  Untagged images are the classic
    # builder's cache too (a multi-stage build's stages): only those older than a week go.
    local ids
    ids="$(timeout 20 docker ps -aq 2>/dev/null || true)"
    # shellcheck disable=SC2086  # one argument per container id
    [ -z "$ids" ] || timeout 60 docker rm -f -v $ids >/dev/null 2>&1 || true
    timeout 20 docker network prune -f >/dev/null 2>&1 || true
    timeout 20 docker volume prune -f >/dev/null 2>&1 || true
    timeout 60 docker image prune -f --filter until=168h >/dev/null 2>&1 || true
    _rsd_kill_pid "$_RSD_PID" 20
  fi
  # Anything still running from the engine's directories (containerd, shims) by PID.
  local pid
  for pid in $(grep -l -s -F "$_RSD_RUN" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ "$pid" != "$$" ] && _rsd_kill_pid "$pid" 5
  done
  # Mounts dockerd may leave: the netns bind mounts under its exec-root, and overlay
  # mounts under the data-root if it was killed.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v a="$_RSD_RUN" -v b="$_RSD_CACHE/data" \
             'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/mounts | sort -r)
  [ "$_RSD_HAD_DOCKER0" = 1 ] || ip link del docker0 2>/dev/null || true
  local br
  for br in $(comm -13 <(echo "$_RSD_BRIDGES_BEFORE") <(_rsd_bridges) | grep '^br-' || true); do
    ip link del "$br" 2>/dev/null || true
  done
  rm -rf "$_RSD_RUN"
  _rsd_say "private engine stopped and cleaned up in $(_rsd_since "$t0") s"
  _RSD_RUN=""
  if [ -n "$_RSD_LOCK_FD" ]; then
    exec {_RSD_LOCK_FD}>&-
    _RSD_LOCK_FD=""
  fi
}

# Containers/networks our tests made on an engine that is not ours carry this label.
_rsd_clean_labelled() {
  local ids
  ids="$(timeout 20 docker ps -aq --filter label=org.roleswap.test 2>/dev/null || true)"
  # shellcheck disable=SC2086
  [ -z "$ids" ] || timeout 60 docker rm -f -v $ids >/dev/null 2>&1 || true
  ids="$(timeout 20 docker network ls -q --filter label=org.roleswap.test 2>/dev/null || true)"
  # shellcheck disable=SC2086
  [ -z "$ids" ] || timeout 20 docker network rm $ids >/dev/null 2>&1 || true
}

roleswap_docker_teardown() {
  [ "$_RSD_TORN_DOWN" = 0 ] || return 0
  _RSD_TORN_DOWN=1
  if [ -n "$_RSD_RUN" ]; then
    _rsd_stop_engine
  elif [ "${ROLESWAP_DOCKER_REQUIRED:-}" = 1 ]; then
    _rsd_clean_labelled
  fi
  [ -z "$_RSD_CFG_TMP" ] || rm -rf "$_RSD_CFG_TMP"
}

_rsd_on_exit() {
  local rc=$?
  roleswap_docker_teardown
  return "$rc"
}
_rsd_on_signal() {
  roleswap_docker_teardown
  trap - INT TERM EXIT
  exit "$1"
}

# -- compose v2 -----------------------------------------------------------------------
_rsd_compose() {
  if timeout 15 docker compose version >/dev/null 2>&1; then
    _rsd_say "compose: $(docker compose version 2>/dev/null | head -n 1)"
    return 0
  fi
  local t0 dir bin apt plugin
  t0=$(_rsd_now)
  dir="$_RSD_CACHE/compose-$_RSD_COMPOSE_SUITE"
  bin="$dir/docker-compose"
  if [ ! -x "$bin" ]; then
    apt="$dir.apt"
    rm -rf "$apt" && mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources" "$apt/deb"
    : >"$apt/status"
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$_RSD_MIRROR" "$_RSD_COMPOSE_SUITE" >"$apt/sources/debian.sources"
    local opts=(-o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$apt/sources"
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
                -o "Dir::State::status=$apt/status" -o "Acquire::Check-Valid-Until=false"
                -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root" -q)
    if ! (apt-get "${opts[@]}" update >/dev/null \
          && cd "$apt/deb" && apt-get "${opts[@]}" download docker-compose >/dev/null); then
      rm -rf "$apt"
      _rsd_error "could not fetch docker-compose from Debian $_RSD_COMPOSE_SUITE ($_RSD_MIRROR)"
      return 1
    fi
    mkdir -p "$apt/x"
    dpkg-deb -x "$apt"/deb/docker-compose_*.deb "$apt/x"
    plugin="$apt/x/usr/libexec/docker/cli-plugins/docker-compose"
    [ -x "$plugin" ] || { _rsd_error "the docker-compose package has no CLI plugin"; rm -rf "$apt"; return 1; }
    mkdir -p "$dir"
    install -m 0755 "$plugin" "$bin.tmp" && mv "$bin.tmp" "$bin"
    basename "$apt"/deb/docker-compose_*.deb >"$dir/package"
    rm -rf "$apt"
  fi
  # A private DOCKER_CONFIG only for this run: the user's own ~/.docker is left alone.
  if [ -z "$_RSD_RUN" ]; then
    _RSD_CFG_TMP="$(mktemp -d /tmp/roleswap-docker-config.XXXXXX)"
  fi
  local cfg="${_RSD_RUN:-$_RSD_CFG_TMP}/docker-config"
  mkdir -p "$cfg/cli-plugins"
  ln -sf "$bin" "$cfg/cli-plugins/docker-compose"
  export DOCKER_CONFIG="$cfg"
  _rsd_say "compose: $(docker compose version 2>/dev/null | head -n 1) (Debian $_RSD_COMPOSE_SUITE" \
    "$(cat "$dir/package" 2>/dev/null), $(_rsd_since "$t0") s)"
}

# -- the whole setup -------------------------------------------------------------------
roleswap_docker_setup() {
  unset ROLESWAP_DOCKER_SKIP ROLESWAP_DOCKER_ERROR ROLESWAP_DOCKER_REQUIRED
  if [ "${ROLESWAP_DOCKER:-1}" = 0 ]; then
    _rsd_skip "ROLESWAP_DOCKER=0"
    return 0
  fi
  local t0; t0=$(_rsd_now)
  trap '_rsd_on_exit' EXIT
  trap '_rsd_on_signal 130' INT
  trap '_rsd_on_signal 143' TERM
  if command -v docker >/dev/null 2>&1 && _rsd_engine_answers; then
    _rsd_say "using the engine that answers at ${DOCKER_HOST:-the default socket}" \
      "($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  elif [ "$(id -u)" != 0 ]; then
    _rsd_skip "no Docker engine answers at ${DOCKER_HOST:-unix:///var/run/docker.sock} and not root, so none can be started here (start Docker or set DOCKER_HOST, or run scripts/test as root)"
    return 0
  else
    _rsd_install_packages || { _rsd_error "could not install docker.io/debootstrap with apt-get"; return 0; }
    _rsd_start_engine || return 0
    # testcontainers on this kind of machine (see docker-facts.md): no registry for the
    # Ryuk image, and /.dockerenv makes it believe it runs in a container.
    export TESTCONTAINERS_RYUK_DISABLED=true
    export TESTCONTAINERS_CONNECTION_MODE=docker_host
    export TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1
  fi
  _rsd_compose || return 0
  if [ "${ROLESWAP_DOCKER_BUILD:-1}" = 0 ]; then
    _rsd_say "ROLESWAP_DOCKER_BUILD=0: images not built (the tests use what the engine has)"
  elif ! "$_RSD_ROOT/docker/build"; then
    _rsd_error "docker/build failed (see above)"
    return 0
  fi
  export ROLESWAP_DOCKER_REQUIRED=1
  _rsd_say "ready in $(_rsd_since "$t0") s"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  if [ "${1:-}" != run ] || [ "$#" -lt 2 ]; then
    echo "usage: scripts/_docker.sh run CMD [ARGS...]   (engine + images, CMD, teardown)" >&2
    exit 2
  fi
  shift
  roleswap_docker_setup
  rc=0
  "$@" || rc=$?
  exit "$rc"
fi
