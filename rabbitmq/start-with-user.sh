#!/usr/bin/env bash
# Starts RabbitMQ, then makes sure the user named by RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS exists.
#
# Why: a node that imports definitions at boot (load_definitions in rabbitmq.conf) skips creating the default
# user, and definitions.json carries no users so that no password hash lives in the repository. The compose
# healthcheck passes only once this script has written the ready marker, so no service connects before the
# user exists. Changing RABBITMQ_DEFAULT_PASS and restarting the container changes the password.
set -euo pipefail

ready=/tmp/broker-user-ready
rm -f "$ready"
user="${RABBITMQ_DEFAULT_USER:?RABBITMQ_DEFAULT_USER must be set}"
pass="${RABBITMQ_DEFAULT_PASS:?RABBITMQ_DEFAULT_PASS must be set}"

rabbitmq-server &
server=$!
# docker stop signals this script (PID 1): pass the signal on so the node shuts down cleanly.
trap 'kill -TERM "$server" 2>/dev/null || true' TERM INT

wait_for_server() {
  local status=0
  while kill -0 "$server" 2>/dev/null; do
    wait "$server" && status=0 || status=$?
  done
  return "$status"
}

ensure_user() {
  if rabbitmqctl -q add_user "$user" "$pass" >/dev/null 2>&1; then
    echo "start-with-user: created broker user $user"
  else
    rabbitmqctl -q change_password "$user" "$pass" >/dev/null || return 1
  fi
  rabbitmqctl -q set_user_tags "$user" administrator || return 1
  rabbitmqctl -q set_permissions -p / "$user" '.*' '.*' '.*' || return 1
}

until rabbitmq-diagnostics -q check_running >/dev/null 2>&1; do
  if ! kill -0 "$server" 2>/dev/null; then
    wait_for_server && exit 0 || exit $?
  fi
  sleep 2
done

if ensure_user; then
  touch "$ready"
else
  echo >&2 "start-with-user: could not set up broker user $user; stopping the node"
  kill -TERM "$server" 2>/dev/null || true
  wait_for_server || true
  exit 1
fi

wait_for_server && exit 0 || exit $?
