#!/bin/bash
# Build time only (docker/server/Dockerfile): install one server flavor's Debian packages
# (`install.sh packages FLAVOR`), or initialise the template datadir every container
# copies on its first start (`install.sh template`).
set -euo pipefail

LIB=/usr/local/lib/roleswap-server
TEMPLATE=/var/lib/roleswap-server/template

packages() {
  local flavor="$1" engine series pkgs
  case "$flavor" in
    mariadb-10.11) engine=mariadb series=10.11 pkgs=(mariadb-server) ;;
    mariadb-11.8)  engine=mariadb series=11.8 pkgs=(mariadb-server) ;;
    # Oracle MySQL Community 9.7 is in sid only; the -core packages are the server and the
    # client without the Debian service scripts (see shared/notes/mysql-facts.md).
    mysql-9.7)     engine=mysql series=9.7 pkgs=(mysql-server-core mysql-client-core) ;;
    *) echo "install.sh: unknown flavor '$flavor' (mariadb-10.11, mariadb-11.8, mysql-9.7)" >&2; exit 2 ;;
  esac
  export DEBIAN_FRONTEND=noninteractive
  # No init system in a build: keep package scripts from trying to start services.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  # sid's Release file on the mirror may be past its Valid-Until date.
  apt-get -o Acquire::Check-Valid-Until=false update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log
  # MariaDB's postinst initialises /var/lib/mysql: containers get a copy of the template
  # instead, so the image carries one datadir, not two.
  rm -rf /var/lib/mysql /etc/mysql
  getent group mysql >/dev/null || groupadd --system mysql
  getent passwd mysql >/dev/null || useradd --system --gid mysql --home-dir /nonexistent \
    --no-create-home --shell /usr/sbin/nologin mysql
  mkdir -p /var/lib/mysql /run/mysqld /etc/mysql /var/lib/roleswap-server "$LIB"
  chown mysql:mysql /var/lib/mysql /run/mysqld /var/lib/roleswap-server
  chmod 0750 /var/lib/mysql
  if [ "$engine" = mysql ]; then
    mkdir -p /var/lib/mysql-files && chown mysql:mysql /var/lib/mysql-files && chmod 0750 /var/lib/mysql-files
  fi
  local daemon=mariadbd
  [ "$engine" = mysql ] && daemon=mysqld
  # A suite that moved to another series must fail the build, not mislabel the tag.
  local version
  version="$("$daemon" --version)"
  case "$version" in
    *" Ver $series."*) ;;
    *) echo "install.sh: $flavor: expected $daemon $series.x, got: $version" >&2; exit 1 ;;
  esac
  echo "$engine" >"$LIB/engine"
  echo "$flavor" >"$LIB/flavor"
  echo "$version"
}

template() {
  local engine
  engine="$(cat "$LIB/engine")"
  rm -rf "$TEMPLATE"
  if [ "$engine" = mariadb ]; then
    # root@localhost without a password, reachable only over the unix socket inside the
    # container (skip-name-resolve; the entrypoint drops root's TCP accounts)
    mariadb-install-db --no-defaults --datadir="$TEMPLATE" --user=mysql \
      --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve --innodb-log-file-size=16M \
      >/tmp/install-db.log 2>&1 || { cat /tmp/install-db.log >&2; exit 1; }
  else
    mysqld --no-defaults --initialize-insecure --datadir="$TEMPLATE" --user=mysql \
      --innodb-redo-log-capacity=32M --secure-file-priv=/var/lib/mysql-files \
      --log-error=/tmp/install-db.log || { cat /tmp/install-db.log >&2; exit 1; }
    # Nothing unique per server may be baked into the image: auto.cnf holds the server
    # UUID (equal UUIDs stop replication, error 13117) and the *.pem files are the TLS
    # and RSA key pairs.  Each container's server makes its own at its first start.
    rm -f "$TEMPLATE/auto.cnf" "$TEMPLATE"/*.pem
  fi
  rm -f /tmp/install-db.log
  chown -R mysql:mysql "$TEMPLATE"
  du -sh "$TEMPLATE"
}

case "${1:-}" in
  packages) packages "${2:?flavor}" ;;
  template) template ;;
  *) echo "usage: install.sh packages FLAVOR | template" >&2; exit 2 ;;
esac
