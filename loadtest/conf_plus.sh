#!/bin/sh
# conf_plus.sh CONF EXTRA COMMAND...: writes CONF.plus (CONF, then the
# lines of EXTRA) and runs COMMAND, which names CONF.plus. For
# `shardmq-load compare --broker NAME=cmd:...`, whose generated `{conf}`
# only holds the listener: loadtest/persistence.sh adds persistence keys.
set -e
conf=$1
extra=$2
shift 2
cat "$conf" "$extra" >"$conf.plus"
exec "$@"
