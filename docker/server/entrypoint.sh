#!/bin/bash
# roleswap/server entrypoint: one MySQL/MariaDB server of a replicated test cluster.
# The contract (environment, first start, restart, readiness) is in docker/README.md.
#
# First start (empty datadir): copy the build-time template datadir, start the server
# (its my.cnf says read_only=1, MySQL also super_read_only=1), create the accounts and
# databases with sql_log_bin=0, then make a primary writable (SET GLOBAL, run time only)
# or point a replica at ROLESWAP_SOURCE and start it; mark the datadir initialised;
# print "roleswap-server: ready".
# Restart (datadir initialised): start the server and print the ready line once it
# accepts connections; nothing else is touched, so a restarted primary is read-only.
#
# The server runs as this script's child (the script must run SQL after it started);
# SIGTERM/SIGINT are forwarded to it and the script exits with the server's status.
set -euo pipefail

LIB=/usr/local/lib/roleswap-server
# shellcheck source=docker/server/lib.sh
source "$LIB/lib.sh"

DATADIR=/var/lib/mysql
TEMPLATE=/var/lib/roleswap-server/template
CNF=/etc/mysql/my.cnf
MARKER="$DATADIR/roleswap-initialised"
READY_FILE=/run/mysqld/roleswap-ready  # the image's HEALTHCHECK looks for it
START_TIMEOUT="${ROLESWAP_START_TIMEOUT:-120}"     # seconds until the server answers
REPLICA_TIMEOUT="${ROLESWAP_REPLICA_TIMEOUT:-300}" # seconds until a replica's threads run

ENGINE="$(cat "$LIB/engine")"
if [ "$ENGINE" = mysql ]; then
  DAEMON=mysqld CLIENT=mysql
else
  DAEMON=mariadbd CLIENT=mariadb
fi
SERVER_PID=""

# Root over the unix socket (root@localhost has no password and no TCP access).
rs_client() {
  "$CLIENT" --defaults-file="$CNF" --protocol=socket -uroot --default-character-set=utf8mb4 \
    --batch --skip-column-names "$@"
}

# rs_sql LABEL SQL: run SQL as root; on failure say which step failed, with every secret
# redacted from the server's message, and stop.  The SQL goes through a pipe from the
# printf builtin: never in an argv (ps, /proc) and never in a temporary file.
rs_sql() {
  local label="$1" sql="$2" err
  if ! err="$(printf '%s\n' "$sql" | rs_client 2>&1 >/dev/null)"; then
    rs_fail "$label failed: $(rs_redact "$err" "$RS_CONTROL_PASSWORD" "$RS_REPL_PASSWORD" \
      "$RS_APP_PASSWORD" "$RS_ROOT_PASSWORD")"
  fi
}

# rs_query SQL: one result (no secrets in SQL passed here).
rs_query() { rs_client -e "$1" 2>/dev/null; }

server_alive() { [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; }

stop_server() {
  server_alive || return 0
  if [ "$ENGINE" = mysql ]; then
    # A MySQL source waits ~8-10 s at shutdown for its binlog dump threads (longer than
    # `docker stop`'s default grace period): end them first.  Replication settings are
    # not touched; a replica's own threads stop with the server.
    timeout 3 "$CLIENT" --defaults-file="$CNF" --protocol=socket -uroot --batch --skip-column-names \
      -e "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'" 2>/dev/null \
      | while read -r id; do
          timeout 2 "$CLIENT" --defaults-file="$CNF" --protocol=socket -uroot -e "KILL $((id))" 2>/dev/null || true
        done || true
  fi
  kill -TERM "$SERVER_PID" 2>/dev/null || true
}

on_signal() {
  trap - TERM INT
  rs_log "stopping $DAEMON (signal)"
  stop_server
  local rc=0
  wait "$SERVER_PID" || rc=$?
  exit "$rc"
}

on_exit() {
  local rc=$?
  # a failed start must not leave a half-configured server running
  if [ "$rc" != 0 ] && server_alive; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}

start_server() {
  local args=(--defaults-file="$CNF" --server-id="$RS_SERVER_ID" --port="$RS_PORT"
              --report-host="$RS_REPORT_HOST" --report-port="$RS_PORT")
  if [ "$ENGINE" = mysql ] && [ "$RS_GTID" = 0 ]; then
    args+=(--gtid-mode=OFF --enforce-gtid-consistency=OFF)
  fi
  "$DAEMON" "${args[@]}" &
  SERVER_PID=$!
  local deadline=$((SECONDS + START_TIMEOUT))
  until rs_query "SELECT 1" >/dev/null; do
    if ! server_alive; then
      local rc=0
      wait "$SERVER_PID" || rc=$?
      SERVER_PID=""
      rs_fail "$DAEMON exited with status $rc while starting (its log is above)"
    fi
    [ "$SECONDS" -lt "$deadline" ] || rs_fail "$DAEMON did not accept connections within ${START_TIMEOUT} s"
    sleep 0.05
  done
}

# The accounts of the process lab (roleswap.lab.node.create_accounts), unlogged.
create_accounts() {
  local control repl app
  control="$(rs_check_grants "$LIB/grants/$ENGINE-control.grants")"
  repl="$(rs_check_grants "$LIB/grants/$ENGINE-repl.grants")"
  app="$(rs_check_grants "$LIB/grants/app.grants")"
  local cu="'$RS_CONTROL_USER'@'%'" ru="'$RS_REPL_USER'@'%'" au="'$RS_APP_USER'@'%'"
  local db="\`$RS_APP_DATABASE\`"
  # root's accounts other than root@localhost (socket), and anonymous ones, go first
  local drops
  drops="$(rs_query "SELECT CONCAT('DROP USER ', QUOTE(User), '@', QUOTE(Host), ';')
                     FROM mysql.user WHERE (User = 'root' AND Host <> 'localhost') OR User = ''")" \
    || rs_fail "could not list the template's accounts"
  local sql="SET SESSION sql_log_bin=0;
SET SESSION sql_mode='STRICT_TRANS_TABLES';"
  if [ "$ENGINE" = mysql ]; then
    # CREATE USER fails under super_read_only (1290) even unlogged; read_only stays on
    sql+="
SET GLOBAL super_read_only=0;
RESET BINARY LOGS AND GTIDS;"
  else
    sql+="
RESET MASTER;"
  fi
  sql+="
$drops
CREATE USER $cu IDENTIFIED BY $(rs_sql_quote "$RS_CONTROL_PASSWORD");
GRANT $control ON *.* TO $cu;
CREATE USER $ru IDENTIFIED BY $(rs_sql_quote "$RS_REPL_PASSWORD");
GRANT $repl ON *.* TO $ru;
CREATE USER $au IDENTIFIED BY $(rs_sql_quote "$RS_APP_PASSWORD");
GRANT $app ON $db.* TO $au;
CREATE DATABASE IF NOT EXISTS $db;
CREATE DATABASE IF NOT EXISTS \`roleswap\`;
GRANT ALL ON \`roleswap\`.* TO $cu;"
  if [ -n "$RS_ROOT_PASSWORD" ]; then
    sql+="
CREATE USER 'root'@'%' IDENTIFIED BY $(rs_sql_quote "$RS_ROOT_PASSWORD");
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;"
  fi
  if [ "$ENGINE" = mysql ]; then
    sql+="
SET GLOBAL super_read_only=1;"
  fi
  rs_sql "creating the accounts" "$sql"
}

make_writable() {
  if [ "$ENGINE" = mysql ]; then
    rs_sql "making the primary writable" "SET GLOBAL super_read_only=0; SET GLOBAL read_only=0;"
  else
    rs_sql "making the primary writable" "SET GLOBAL read_only=0;"
  fi
}

# The statements roleswap's dialects use (roleswap.mysql.dialect), connect retry 1 s
# like the process lab; file/position replicas start at the source's first binlog,
# which its own first start reset.
start_replication() {
  local k=MASTER change="CHANGE MASTER TO" start="START SLAVE" tail
  if [ "$ENGINE" = mysql ]; then
    k=SOURCE change="CHANGE REPLICATION SOURCE TO" start="START REPLICA"
  fi
  case "$ENGINE:$RS_GTID" in
    mariadb:1) tail="MASTER_USE_GTID=slave_pos" ;;
    mariadb:0) tail="MASTER_LOG_FILE='mysql-bin.000001', MASTER_LOG_POS=4, MASTER_USE_GTID=no" ;;
    # caching_sha2_password over a link without TLS needs the source's RSA key
    mysql:1) tail="SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1" ;;
    mysql:0) tail="SOURCE_LOG_FILE='mysql-bin.000001', SOURCE_LOG_POS=4, SOURCE_AUTO_POSITION=0, GET_SOURCE_PUBLIC_KEY=1" ;;
  esac
  rs_sql "pointing the replica at $RS_SOURCE_HOST:$RS_SOURCE_PORT" "$change ${k}_HOST=$(rs_sql_quote "$RS_SOURCE_HOST"),
 ${k}_PORT=$RS_SOURCE_PORT, ${k}_USER=$(rs_sql_quote "$RS_REPL_USER"),
 ${k}_PASSWORD=$(rs_sql_quote "$RS_REPL_PASSWORD"), ${k}_CONNECT_RETRY=1, $tail;
$start;"
}

# Wait until the IO and SQL threads run (the source may still be starting: the IO
# thread retries every second).
wait_replication() {
  local status="SHOW SLAVE STATUS" io=Slave_IO_Running sqlt=Slave_SQL_Running
  if [ "$ENGINE" = mysql ]; then
    status="SHOW REPLICA STATUS" io=Replica_IO_Running sqlt=Replica_SQL_Running
  fi
  local deadline=$((SECONDS + REPLICA_TIMEOUT)) next_note=$((SECONDS + 10)) out io_state sql_state err
  while :; do
    # vertical output, with the field names (no --skip-column-names here)
    out="$("$CLIENT" --defaults-file="$CNF" --protocol=socket -uroot -E -e "$status" 2>/dev/null || true)"
    io_state="$(sed -n "s/^ *$io: //p" <<<"$out")"
    sql_state="$(sed -n "s/^ *$sqlt: //p" <<<"$out")"
    [ "$io_state" = Yes ] && [ "$sql_state" = Yes ] && return 0
    err="$(sed -n -E 's/^ *Last_(IO|SQL)_Error: (.+)$/\2/p' <<<"$out" | head -n 2 | tr '\n' ' ')"
    server_alive || rs_fail "$DAEMON exited while replication was starting"
    if [ "$SECONDS" -ge "$deadline" ]; then
      rs_fail "replication from $RS_SOURCE_HOST:$RS_SOURCE_PORT did not start within ${REPLICA_TIMEOUT} s" \
        "(IO ${io_state:-?}, SQL ${sql_state:-?}) ${err}"
    fi
    if [ "$SECONDS" -ge "$next_note" ]; then
      rs_log "waiting for replication from $RS_SOURCE_HOST:$RS_SOURCE_PORT (IO ${io_state:-?}, SQL ${sql_state:-?}) ${err}"
      next_note=$((SECONDS + 10))
    fi
    sleep 0.2
  done
}

main() {
  rs_read_env  # exits at once, naming the variable, if anything is missing or wrong
  # Nothing else runs in this container yet: what is in /run/mysqld is from a previous
  # life of it (after `docker kill`, MySQL's socket lock could name a PID that now
  # belongs to another process, and mysqld would refuse to start).
  rm -f "$READY_FILE" /run/mysqld/mysqld.sock /run/mysqld/mysqld.sock.lock /run/mysqld/mysqld.pid
  local first=0
  if [ -e "$MARKER" ]; then
    first=0
  elif [ -z "$(ls -A "$DATADIR" 2>/dev/null)" ]; then
    [ -w "$DATADIR" ] || rs_fail "$DATADIR is not writable by $(id -un) (uid $(id -u)); a bind mount must belong to that uid"
    cp -a "$TEMPLATE/." "$DATADIR/"
    first=1
  else
    rs_fail "$DATADIR holds data but no roleswap-initialised marker: an earlier first start" \
      "stopped half-way, or it is not this image's datadir; start on an empty volume"
  fi
  trap on_signal TERM INT
  trap on_exit EXIT
  start_server
  if [ "$first" = 1 ]; then
    create_accounts
    if [ "$RS_ROLE" = primary ]; then
      make_writable
      rs_log "initialised: primary, server_id $RS_SERVER_ID, writable"
    else
      start_replication
      wait_replication
      rs_log "initialised: replica of $RS_SOURCE_HOST:$RS_SOURCE_PORT, server_id $RS_SERVER_ID" \
        "($([ "$RS_GTID" = 1 ] && echo GTID || echo binlog file/position)), threads running"
    fi
    touch "$MARKER"
  else
    rs_log "restarted on an initialised datadir: replication settings untouched, read-only as configured"
  fi
  touch "$READY_FILE"
  rs_log "ready"
  local rc=0
  wait "$SERVER_PID" || rc=$?
  rs_log "$DAEMON exited with status $rc"
  SERVER_PID=""
  exit "$rc"
}

main "$@"
