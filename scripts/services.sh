#!/usr/bin/env bash
# Start the local services the project needs (run as root on Debian; used as
# `npm run services` and by .ci/run). Idempotent: services that already answer
# are left alone, so a second run takes well under a second.
#
#   RabbitMQ  RABBITMQ_URL (or AMQP_URL) default amqp://guest:guest@127.0.0.1:5672
#   Redis     REDIS_URL default redis://127.0.0.1:6379
#   MongoDB   MONGO_URL default mongodb://127.0.0.1:27017/orchestrator
#             If nothing answers there, the embedded FerretDB (tools/ferretdb,
#             SQLite backend) is built once (cached in .cache/ferretdb) and
#             started via scripts/ferretdb.sh.
#
# Missing Debian packages (rabbitmq-server, redis-server, and prometheus for
# promtool and redis-sentinel for the cluster test, whose services are not
# started) are installed with apt-get. If
# rabbitmq/definitions.json exists it is imported after RabbitMQ starts (and
# whenever the file changes). A queue the broker already holds with another
# type than the file declares (the classic ingest queue of earlier versions;
# the import skips it) is deleted and declared again when it is empty and
# unused; otherwise the script stops and names the one-time migration.
# Exits non-zero with a message naming the service that could not be started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="$ROOT/.cache"

MONGO_URL="${MONGO_URL:-mongodb://127.0.0.1:27017/orchestrator}"
AMQP_URL="${RABBITMQ_URL:-${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672}}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
RABBITMQ_START_TIMEOUT="${RABBITMQ_START_TIMEOUT:-120}"
export MONGO_URL

log() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

# url_hostport URL DEFAULT_PORT -> "host port" (first host, userinfo/path stripped)
url_hostport() {
  local hp="${1#*://}"
  hp="${hp#*@}"; hp="${hp%%/*}"; hp="${hp%%\?*}"; hp="${hp%%,*}"
  local host="${hp%:*}" port="${hp##*:}"
  [[ "$hp" == *:* ]] || { host="$hp"; port="$2"; }
  host="${host#[}"; host="${host%]}"
  [[ -n "$host" ]] || host=127.0.0.1
  echo "$host $port"
}
is_local() { [[ "$1" == 127.* || "$1" == localhost || "$1" == ::1 ]]; }

# The probes below run small bash scripts whose $1/$2 are meant to expand in the inner shell.
# shellcheck disable=SC2016
# tcp_open HOST PORT
tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# shellcheck disable=SC2016
# amqp_answers HOST PORT: send the AMQP 0-9-1 protocol header, expect a method frame (0x01).
amqp_answers() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "AMQP\x00\x00\x09\x01" >&3
    IFS= read -r -N 1 -d "" b <&3 || exit 1
    [[ "$b" == $'"'"'\x01'"'"' ]]' _ "$1" "$2" 2>/dev/null
}

# shellcheck disable=SC2016
# redis_answers HOST PORT: PING -> +PONG (or -NOAUTH: it answers, auth is the client's business)
redis_answers() {
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "PING\r\n" >&3
    IFS= read -r line <&3 || exit 1
    [[ "$line" == +PONG* || "$line" == -NOAUTH* ]]' _ "$1" "$2" 2>/dev/null
}

mongo_answers() {
  if command -v node >/dev/null 2>&1; then
    node "$ROOT/scripts/ping-mongo.mjs" "$1" --timeout 2000 -q
  else
    # no node: fall back to the ping built into the FerretDB helper binary
    bash "$ROOT/scripts/ferretdb.sh" build >/dev/null && "$(bash "$ROOT/scripts/ferretdb.sh" path)" ping -q -timeout 2s "$1"
  fi
}

# ---------------------------------------------------------------------------
# Debian packages
# ---------------------------------------------------------------------------
missing=()
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if ((${#missing[@]})); then
  [[ "$(id -u)" == 0 ]] || die "need root to install ${missing[*]} (apt-get)"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${missing[*]} by hand"
  log "installing ${missing[*]} with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || die "apt-get update failed"
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
fi

# install_without_service PKG WHY: installs a Debian package whose system service must not start (the tests
# run their own instances on private ports): a policy-rc.d that refuses every start is put in place for the
# install when there is none, and the service is disabled for the next boot.
install_without_service() {
  local pkg="$1" why="$2"
  [[ "$(id -u)" == 0 ]] || die "need root to install $pkg ($why) with apt-get"
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $pkg ($why) by hand"
  log "installing $pkg ($why; its service is not started) with apt-get ..."
  export DEBIAN_FRONTEND=noninteractive
  local policy=/usr/sbin/policy-rc.d own_policy=0 rc=0
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && own_policy=1
  fi
  { apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 \
    && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$pkg" >&2; } || rc=$?
  ((own_policy)) && rm -f "$policy"
  ((rc == 0)) || die "apt-get install $pkg failed"
  if [[ -d /run/systemd/system ]]; then systemctl disable "$pkg" >/dev/null 2>&1 || true; fi
}

# promtool (Debian package prometheus) checks and unit-tests monitoring/alerts.yml, and the end-to-end alert
# test runs its own prometheus on a private port.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  install_without_service prometheus "for promtool"
fi
# The cluster test (npm run test:cluster) runs three Sentinels of its own beside a Redis primary and replica.
if ! command -v redis-sentinel >/dev/null 2>&1; then
  install_without_service redis-sentinel "for the cluster test"
fi

# ---------------------------------------------------------------------------
# RabbitMQ
# ---------------------------------------------------------------------------
read -r AMQP_HOST AMQP_PORT < <(url_hostport "$AMQP_URL" 5672)
# The node is named rabbit@<short hostname>; Erlang distribution needs that name
# to resolve. (Exported for rabbitmq-server and rabbitmqctl alike; run
# `RABBITMQ_NODENAME=rabbit@localhost rabbitmqctl ...` by hand in that case.)
if [[ -z "${RABBITMQ_NODENAME:-}" ]] && ! getent hosts "$(hostname -s)" >/dev/null 2>&1; then
  export RABBITMQ_NODENAME=rabbit@localhost
  log "hostname $(hostname -s) does not resolve; using RABBITMQ_NODENAME=$RABBITMQ_NODENAME"
fi
rabbit_state="already running"
if ! amqp_answers "$AMQP_HOST" "$AMQP_PORT"; then
  is_local "$AMQP_HOST" || die "RabbitMQ at $AMQP_HOST:$AMQP_PORT (RABBITMQ_URL) does not answer and is not local; cannot start it"
  [[ "$AMQP_PORT" == 5672 || -n "${RABBITMQ_NODE_PORT:-}" ]] || export RABBITMQ_NODE_PORT="$AMQP_PORT"
  if pgrep -u rabbitmq -f 'beam.*rabbit' >/dev/null 2>&1; then
    log "RabbitMQ node process exists but AMQP does not answer yet; waiting for it"
  else
    log "starting RabbitMQ (rabbitmq-server -detached) ..."
    rabbitmq-server -detached >&2 2>&1 || die "rabbitmq-server -detached failed (see /var/log/rabbitmq/)"
  fi
  t0=$SECONDS
  until amqp_answers "$AMQP_HOST" "$AMQP_PORT"; do
    if (( SECONDS - t0 > RABBITMQ_START_TIMEOUT )); then
      tail -n 30 /var/log/rabbitmq/startup_err /var/log/rabbitmq/rabbit*.log 2>/dev/null >&2 || true
      die "RabbitMQ did not answer on $AMQP_HOST:$AMQP_PORT within ${RABBITMQ_START_TIMEOUT}s (logs in /var/log/rabbitmq/)"
    fi
    sleep 1
  done
  timeout 60 rabbitmqctl -q await_startup >&2 || die "rabbitmqctl await_startup failed"
  rabbit_state="started in $((SECONDS - t0)) s"
fi

DEFS="$ROOT/rabbitmq/definitions.json"

import_definitions() {
  # Read from stdin (no path argument; "-" is rejected by 3.10): the CLI runs as
  # the rabbitmq user, which may not be able to read the work tree.
  timeout 120 rabbitmqctl -q import_definitions < "$DEFS" >&2 \
    || die "rabbitmqctl import_definitions rabbitmq/definitions.json failed"
}

# declared_queue_types: "name<TAB>type" for each queue of definitions.json that sets x-queue-type.
declared_queue_types() {
  if command -v node >/dev/null 2>&1; then
    node -e 'for (const q of JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).queues ?? [])
      if (q.arguments?.["x-queue-type"]) console.log(`${q.name}\t${q.arguments["x-queue-type"]}`);' "$DEFS"
  elif command -v jq >/dev/null 2>&1; then
    jq -r '.queues[]? | select(.arguments["x-queue-type"]) | "\(.name)\t\(.arguments["x-queue-type"])"' "$DEFS"
  else
    log "neither node nor jq found: not checking the types of the broker's queues against rabbitmq/definitions.json"
  fi
}

# broker_queue NAME -> "type messages consumers" of that queue on the broker, or nothing when it does not exist.
broker_queue() {
  timeout 60 rabbitmqctl -q list_queues name type messages consumers --no-table-headers \
    | awk -F'\t' -v q="$1" '$1 == q { print $2, $3, $4 }'
}

# check_queue_types: prints "name has type X, declared Y" for each mismatch; fails if there is one.
check_queue_types() {
  local name want have _ bad=0
  while IFS=$'\t' read -r name want; do
    read -r have _ < <(broker_queue "$name"; echo)
    if [[ -n "$have" && "$have" != "$want" ]]; then
      echo "services: $name is a $have queue on the broker, declared $want" >&2
      bad=1
    fi
  done < <(declared_queue_types)
  return "$bad"
}

# replace_mistyped_queues: a queue the broker holds with another type than definitions.json declares (the
# classic ingest queue of earlier versions) is deleted when it is empty and unused, and its name printed, so
# the next import declares it as it should be. One that holds messages or has consumers is left as it is and
# the script stops, naming the one-time migration that keeps its messages (docs/operations.md).
replace_mistyped_queues() {
  local name want have messages consumers replaced=()
  while IFS=$'\t' read -r name want; do
    read -r have messages consumers < <(broker_queue "$name"; echo)
    [[ -z "$have" || "$have" == "$want" ]] && continue
    if [[ "$messages" == 0 && "$consumers" == 0 ]]; then
      log "$name is a $have queue on this broker (an earlier version's), declared $want: it is empty and unused, so it is deleted and declared again"
      timeout 60 rabbitmqctl -q delete_queue "$name" --if-empty --if-unused >/dev/null \
        || { echo "services: ERROR: could not delete $name (it got messages or a consumer meanwhile?); run this again" >&2; return 1; }
      replaced+=("$name")
    else
      cat >&2 <<MSG
services: ERROR: $name is a $have queue on this broker with $messages messages and $consumers consumers;
  rabbitmq/definitions.json declares it a $want queue, and a queue's type cannot change in place.
  To keep its messages, stop every ingest and migrate it once (docs/operations.md, "Migrating the ingest queue"),
  in the ingest's environment (RABBITMQ_URL, BROKER_NAMESPACE, AUTH_MODE, ...; .env.development for a dev broker):
    set -a; . ./.env.development; set +a; npm run ingest -- --migrate-queue
  If they are test data instead:
    rabbitmqctl purge_queue $name
  Then run this again.
MSG
      return 1
    fi
  done < <(declared_queue_types)
  echo "${replaced[*]}"
}

if [[ -f "$DEFS" ]]; then
  if is_local "$AMQP_HOST"; then
    mkdir -p "$CACHE/rabbitmq"
    defs_hash="$(sha256sum < "$DEFS" | cut -d' ' -f1)"
    marker="$CACHE/rabbitmq/definitions.imported"
    if [[ "$rabbit_state" != "already running" || ! -f "$marker" || "$(cat "$marker")" != "$defs_hash" ]]; then
      log "importing rabbitmq/definitions.json ..."
      import_definitions
      # The import skips a queue that exists with other arguments, silently: a queue's type cannot change in
      # place. An empty, unused one is replaced; one that holds messages stops this script with the way out.
      if replaced="$(replace_mistyped_queues)"; then :; else exit 1; fi
      if [[ -n "$replaced" ]]; then
        import_definitions
        check_queue_types || die "rabbitmq/definitions.json: a queue still has another type after the import (see above)"
        rabbit_state="$rabbit_state, definitions imported ($replaced replaced)"
      else
        rabbit_state="$rabbit_state, definitions imported"
      fi
      echo "$defs_hash" > "$marker"
    else
      rabbit_state="$rabbit_state, definitions up to date"
    fi
  else
    log "RABBITMQ_URL is not local; not importing rabbitmq/definitions.json"
  fi
fi

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------
read -r REDIS_HOST REDIS_PORT < <(url_hostport "$REDIS_URL" 6379)
redis_state="already running"
if ! redis_answers "$REDIS_HOST" "$REDIS_PORT"; then
  is_local "$REDIS_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT (REDIS_URL) does not answer and is not local; cannot start it"
  mkdir -p "$CACHE/redis"
  log "starting redis-server on 127.0.0.1:$REDIS_PORT ..."
  # No RDB/AOF persistence: test data only, and a server started from a clone
  # that is later deleted must not start refusing writes after a failed save.
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save "" --appendonly no --stop-writes-on-bgsave-error no \
    --dir "$CACHE/redis" --logfile "$CACHE/redis/redis.log" --pidfile "$CACHE/redis/redis.pid" >&2 \
    || die "redis-server failed to start (log: $CACHE/redis/redis.log)"
  t0=$SECONDS
  until redis_answers "$REDIS_HOST" "$REDIS_PORT"; do
    if (( SECONDS - t0 > 30 )); then
      tail -n 20 "$CACHE/redis/redis.log" >&2 2>/dev/null || true
      die "Redis did not answer PING on $REDIS_HOST:$REDIS_PORT within 30s (log: $CACHE/redis/redis.log)"
    fi
    sleep 0.2
  done
  redis_state="started"
fi

# ---------------------------------------------------------------------------
# MongoDB (an existing server, or the embedded FerretDB)
# ---------------------------------------------------------------------------
read -r MONGO_HOST MONGO_PORT < <(url_hostport "$MONGO_URL" 27017)
mongo_state="already running"
mongo_kind="existing server"
if [[ "$MONGO_URL" != mongodb://* ]]; then
  mongo_state="not checked (only mongodb:// URLs are pinged)"
elif ! mongo_answers "$MONGO_URL"; then
  is_local "$MONGO_HOST" || die "MongoDB at $MONGO_HOST:$MONGO_PORT (MONGO_URL) does not answer and is not local; cannot start it"
  if tcp_open "$MONGO_HOST" "$MONGO_PORT"; then
    die "port $MONGO_HOST:$MONGO_PORT is taken by something that does not answer a MongoDB ping; free it or change MONGO_URL"
  fi
  bash "$ROOT/scripts/ferretdb.sh" start || die "could not start the embedded FerretDB for MONGO_URL (see messages above)"
  mongo_answers "$MONGO_URL" || die "embedded FerretDB started but $MONGO_URL does not answer a ping"
  mongo_state="started"
fi
if bash "$ROOT/scripts/ferretdb.sh" status >/dev/null 2>&1; then
  mongo_kind="embedded FerretDB 1.24.2/SQLite, data in .cache/ferretdb/data"
fi

redact() { sed -E 's#//[^/@]*@#//#' <<< "$1"; }
echo "services: rabbitmq  $(redact "$AMQP_URL")  ($rabbit_state)"
echo "services: redis     $REDIS_URL  ($redis_state)"
echo "services: mongodb   $(redact "$MONGO_URL")  ($mongo_kind; $mongo_state)"
