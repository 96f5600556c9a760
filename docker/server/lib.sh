# shellcheck shell=bash
# Functions of the roleswap/server entrypoint that need no server: reading and checking
# the environment, secrets, SQL quoting, redaction.  Kept apart so that
# tests/unit/test_docker_files.py can run them without Docker.
#
# Every check fails at once with a message naming the variable (the contract in
# docker/README.md).  Secret values are never printed: not in messages, not with `set -x`.
# The RS_* variables set here are read by the entrypoint that sources this file.
# shellcheck disable=SC2034

rs_log() { printf 'roleswap-server: %s\n' "$*"; }
rs_fail() {
  printf 'roleswap-server: error: %s\n' "$*" >&2
  exit 1
}

rs_uint_in() {  # VALUE MIN MAX: an integer within [MIN, MAX]?
  [[ "$1" =~ ^[0-9]{1,10}$ ]] || return 1
  local v=$((10#$1))
  [ "$v" -ge "$2" ] && [ "$v" -le "$3" ]
}

RS_HOST_RE='^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$'

# rs_secret NAME OUTVAR: NAME's value, or the content of the file named by NAME_FILE
# (trailing newlines dropped, as the official MySQL/MariaDB images do).  Required and
# non-empty.  The variables are unset afterwards, so the server does not inherit them.
rs_secret() {
  local name="$1" file_var="${1}_FILE" value=""
  local direct="${!name-}" path="${!file_var-}"
  if [ -n "$direct" ] && [ -n "$path" ]; then
    rs_fail "both $name and $file_var are set; set one of them"
  fi
  if [ -n "$path" ]; then
    [ -f "$path" ] && [ -r "$path" ] || rs_fail "$file_var names '$path', which is not a readable file"
    value="$(<"$path")"
  else
    value="$direct"
  fi
  [ -n "$value" ] || rs_fail "$name (or $file_var) is required and must not be empty"
  unset "$name" "$file_var"
  printf -v "$2" '%s' "$value"
}

# rs_optional_secret NAME OUTVAR: as rs_secret, but unset/empty is allowed ("").
rs_optional_secret() {
  local name="$1" file_var="${1}_FILE"
  if [ -z "${!name-}" ] && [ -z "${!file_var-}" ]; then
    printf -v "$2" '%s' ""
    return 0
  fi
  rs_secret "$1" "$2"
}

# rs_sql_quote VALUE: VALUE as a single-quoted SQL string literal.  Backslash and quote
# are escaped; the session runs with a sql_mode without NO_BACKSLASH_ESCAPES
# (rs_sql_prelude), so this is exact for any byte string without NUL (which the
# environment cannot carry anyway).
rs_sql_quote() {
  local s="$1"
  s="${s//\\/\\\\}"
  s="${s//\'/\\\'}"
  printf "'%s'" "$s"
}

# rs_redact TEXT SECRET...: TEXT with every secret (raw and as quoted) replaced by ***.
rs_redact() {
  local text="$1" s q
  shift
  # a parse error quotes the statement from the failing point ("near '...'"): drop it
  text="$(printf '%s' "$text" | sed -E "s/ near '.*//")"
  for s in "$@"; do
    [ -n "$s" ] || continue
    q="$(rs_sql_quote "$s")"
    text="${text//"$q"/***}"
    text="${text//"$s"/***}"
  done
  printf '%s' "$text"
}

# rs_read_env: check the whole environment before anything starts; sets RS_* globals.
rs_read_env() {
  local v
  v="${ROLESWAP_SERVER_ID-}"
  [ -n "$v" ] || rs_fail "ROLESWAP_SERVER_ID is required (an integer 1-4294967295, unique per server)"
  rs_uint_in "$v" 1 4294967295 || rs_fail "ROLESWAP_SERVER_ID='$v' is not an integer 1-4294967295"
  RS_SERVER_ID=$((10#$v))

  v="${ROLESWAP_ROLE-}"
  case "$v" in
    primary|replica) RS_ROLE="$v" ;;
    "") rs_fail "ROLESWAP_ROLE is required: primary or replica" ;;
    *) rs_fail "ROLESWAP_ROLE='$v' is not primary or replica" ;;
  esac

  v="${ROLESWAP_PORT:-3306}"
  rs_uint_in "$v" 1 65535 || rs_fail "ROLESWAP_PORT='$v' is not a port number 1-65535"
  RS_PORT=$((10#$v))

  v="${ROLESWAP_GTID:-1}"
  case "$v" in
    0|1) RS_GTID="$v" ;;
    *) rs_fail "ROLESWAP_GTID='$v' must be 1 (GTID replication) or 0 (binlog file/position)" ;;
  esac

  RS_SOURCE_HOST="" RS_SOURCE_PORT=3306
  v="${ROLESWAP_SOURCE-}"
  if [ "$RS_ROLE" = replica ]; then
    [ -n "$v" ] || rs_fail "ROLESWAP_SOURCE is required for a replica: the primary's host[:port], e.g. db1 or db1:3306"
    local host="${v%:*}" port=3306
    [ "$host" != "$v" ] && port="${v##*:}"
    [[ "$host" =~ $RS_HOST_RE ]] || rs_fail "ROLESWAP_SOURCE='$v': '$host' is not a host name or IPv4 address"
    rs_uint_in "$port" 1 65535 || rs_fail "ROLESWAP_SOURCE='$v': '$port' is not a port number 1-65535"
    RS_SOURCE_HOST="$host" RS_SOURCE_PORT=$((10#$port))
  elif [ -n "$v" ]; then
    rs_log "note: ROLESWAP_SOURCE is ignored on a primary"
  fi

  v="${ROLESWAP_REPORT_HOST:-$(cat /proc/sys/kernel/hostname 2>/dev/null || hostname)}"
  [[ "$v" =~ $RS_HOST_RE ]] || rs_fail "ROLESWAP_REPORT_HOST / the hostname '$v' is not a host name"
  RS_REPORT_HOST="$v"

  RS_CONTROL_USER="${ROLESWAP_CONTROL_USER:-roleswap}"
  RS_REPL_USER="${ROLESWAP_REPL_USER:-repl}"
  RS_APP_USER="${ROLESWAP_APP_USER:-app}"
  local var
  for var in CONTROL REPL APP; do
    local env_name="ROLESWAP_${var}_USER" mine="RS_${var}_USER"
    v="${!mine}"
    [[ "$v" =~ ^[A-Za-z0-9_.-]{1,32}$ ]] || rs_fail "$env_name='$v' is not an account name (1-32 of A-Z a-z 0-9 _ . -)"
    [ "$v" != root ] || rs_fail "$env_name must not be root"
  done
  if [ "$RS_CONTROL_USER" = "$RS_REPL_USER" ] || [ "$RS_CONTROL_USER" = "$RS_APP_USER" ] \
     || [ "$RS_REPL_USER" = "$RS_APP_USER" ]; then
    rs_fail "ROLESWAP_CONTROL_USER, ROLESWAP_REPL_USER and ROLESWAP_APP_USER must be three different accounts"
  fi
  RS_APP_DATABASE="${ROLESWAP_APP_DATABASE:-app}"
  [[ "$RS_APP_DATABASE" =~ ^[A-Za-z0-9_]{1,64}$ ]] \
    || rs_fail "ROLESWAP_APP_DATABASE='$RS_APP_DATABASE' is not a database name (1-64 of A-Z a-z 0-9 _)"
  case "${RS_APP_DATABASE,,}" in
    mysql|sys|information_schema|performance_schema|roleswap)
      rs_fail "ROLESWAP_APP_DATABASE must not be '$RS_APP_DATABASE' (a system or roleswap's own database)" ;;
  esac

  rs_secret ROLESWAP_CONTROL_PASSWORD RS_CONTROL_PASSWORD
  rs_secret ROLESWAP_REPL_PASSWORD RS_REPL_PASSWORD
  rs_secret ROLESWAP_APP_PASSWORD RS_APP_PASSWORD
  rs_optional_secret ROLESWAP_ROOT_PASSWORD RS_ROOT_PASSWORD
}

# rs_check_grants FILE: a grants file holds one privilege list and nothing else (it is
# pasted into GRANT ... ON; this keeps a broken or edited file from becoming SQL).
rs_check_grants() {
  local text re='^[A-Z][A-Z_ ]*(, [A-Z][A-Z_ ]*)*$'
  text="$(<"$1")"
  [[ "$text" =~ $re ]] || rs_fail "$1 is not a privilege list"
  printf '%s' "$text"
}
