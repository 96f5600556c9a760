#!/bin/sh
# HEALTHCHECK of roleswap/server: healthy once the entrypoint printed its ready line and
# while the server process lives.  It deliberately opens no database session: a root
# session, even a short one, is what roleswap's preflight refuses to swap under.
[ -e /run/mysqld/roleswap-ready ] && [ -s /run/mysqld/mysqld.pid ] && kill -0 "$(cat /run/mysqld/mysqld.pid)"
