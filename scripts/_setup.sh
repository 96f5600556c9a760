# shellcheck shell=bash
# Sourced by scripts/test, scripts/demo and scripts/bench: makes a fresh Debian/Ubuntu
# machine ready (system packages when root, a venv with the package and its test extra).
# When not root and something is missing, prints the exact command and exits non-zero.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROLESWAP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

# binary -> Debian package
declare -A NEED=(
  [mariadbd]=mariadb-server [mariadb-install-db]=mariadb-server [redis-server]=redis-server
  [sshd]=openssh-server [arping]=iputils-arping [pt-table-checksum]=percona-toolkit
  [ip]=iproute2 [sudo]=sudo [haproxy]=haproxy [socat]=socat [redis-sentinel]=redis-sentinel
)

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

missing_pkgs=()
for bin in "${!NEED[@]}"; do
  have "$bin" || missing_pkgs+=("${NEED[$bin]}")
done
# The lab's other server flavors (MySQL 9.7 from sid, MariaDB 11.8 from trixie) are fetched
# as Debian packages into a private apt state and unpacked into ~/.cache/roleswap/servers/
# (see roleswap/lab/debfetch.py): that needs apt-get, dpkg-deb and the archive keyring.
have apt-get || missing_pkgs+=(apt)
have dpkg-deb || missing_pkgs+=(dpkg)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing_pkgs+=(debian-archive-keyring)
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing_pkgs+=(python3-venv)
fi
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  mapfile -t missing_pkgs < <(printf '%s\n' "${missing_pkgs[@]}" | sort -u)
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing_pkgs[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # services are not needed (the lab starts its own on free ports); don't fail if
    # the distribution's policy-rc.d refuses to start them
    apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing_pkgs[*]}" >&2
    echo "  run: sudo apt-get update && sudo apt-get install -y ${missing_pkgs[*]}" >&2
    exit 1
  fi
fi

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: $("$PY" --version 2>&1) is too old; Python 3.11+ is needed (set PYTHON=...)" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating venv $VENV"
  "$PY" -m venv "$VENV"
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp="$VENV/.roleswap-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] \
   || ! "$VENV/bin/python" -c 'import roleswap, intermission, pytest' >/dev/null 2>&1; then
  echo "setup: installing roleswap[test] into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH:/usr/sbin:/sbin"

# Fetch the lab's other server flavors once (later runs find them in the cache), so the
# tests do not each pay the download.  ROLESWAP_NO_FETCH=1 skips it (then the first
# `roleswap lab up --server NAME` fetches).
if [ "${ROLESWAP_NO_FETCH:-}" != 1 ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/roleswap/servers"
  for flavor in mariadb-11.8 mysql-9.7; do
    # `lab fetch` is a no-op (well under a second) when the cache already holds everything
    # this roleswap's flavor needs; an older, incomplete copy is fetched again.
    start=$SECONDS
    if "$VENV/bin/roleswap" lab fetch "$flavor" 2>&1 | sed 's/^/  /'; then
      echo "setup: lab server flavor $flavor ready in $cache ($((SECONDS - start)) s)"
    else
      echo "setup: could not fetch $flavor (see above); labs and tests on it will fail" >&2
    fi
  done
fi
