#!/usr/bin/env bash
# Manage the local embedded FerretDB (MongoDB wire-compatible, SQLite backend)
# built from tools/ferretdb. Used by scripts/services.sh and by fault tests.
#
# Build: the FerretDB module version required by tools/ferretdb/go.mod is
# fetched with `go mod download` (module proxy, checked against go.sum), copied
# to $FERRETDB_CACHE_DIR/src/FerretDB@<version>, and tools/ferretdb/patches/*.patch
# are applied to the copy in name order (`patch -p1`, else `git apply`); a failing
# patch fails the build. tools/ferretdb is then built with -modfile pointing to a
# generated copy of its go.mod that adds `replace` to that copy, so the committed
# go.mod stays unpatched and the source tree is not touched. The binary is cached
# under a key of go.mod, go.sum, *.go, the patches, the build tags and the Go
# version; any change rebuilds. `ferretdb-embedded version` names the patches
# compiled in (see tools/ferretdb/README.md).
#
#   scripts/ferretdb.sh build     build the binary if its cached build is stale
#   scripts/ferretdb.sh start     build if needed, start in the background, wait until it answers a ping
#   scripts/ferretdb.sh stop      SIGTERM (clean shutdown, a few seconds), SIGKILL after $FERRETDB_STOP_TIMEOUT s
#   scripts/ferretdb.sh kill      SIGKILL at once (simulates a crash)
#   scripts/ferretdb.sh restart   stop + start
#   scripts/ferretdb.sh status    exit 0 if our process runs and answers a ping, 1 otherwise
#   scripts/ferretdb.sh path      print the binary path
#
# Environment:
#   FERRETDB_LISTEN_ADDR  host:port to listen on (default: derived from MONGO_URL, else 127.0.0.1:27017)
#   FERRETDB_CACHE_DIR    binary, pid file, log and data live here (default: <repo>/.cache/ferretdb)
#   FERRETDB_STATE_DIR    SQLite data directory (default: $FERRETDB_CACHE_DIR/data)
#   FERRETDB_LOG_LEVEL    debug|info|warn|error (default: error; warn logs every error reply, e.g. each duplicate-key conflict)
#   FERRETDB_START_TIMEOUT seconds to wait for the first ping (default 30)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC_DIR="$ROOT/tools/ferretdb"
PATCH_DIR="$SRC_DIR/patches"
FERRETDB_MODULE="github.com/FerretDB/FerretDB"
CACHE_DIR="${FERRETDB_CACHE_DIR:-$ROOT/.cache/ferretdb}"
BIN="$CACHE_DIR/ferretdb-embedded"
KEY_FILE="$CACHE_DIR/ferretdb-embedded.key"
PID_FILE="$CACHE_DIR/ferretdb.pid"
LOG_FILE="$CACHE_DIR/ferretdb.log"
STATE_DIR="${FERRETDB_STATE_DIR:-$CACHE_DIR/data}"
BUILD_TAGS="ferretdb_no_postgresql"   # SQLite only: smaller, faster build
START_TIMEOUT="${FERRETDB_START_TIMEOUT:-30}"
STOP_TIMEOUT="${FERRETDB_STOP_TIMEOUT:-20}"

log() { echo "ferretdb: $*" >&2; }
die() { echo "ferretdb: ERROR: $*" >&2; exit 1; }

# host:port from MONGO_URL (first host), else the default.
listen_addr() {
  if [[ -n "${FERRETDB_LISTEN_ADDR:-}" ]]; then echo "$FERRETDB_LISTEN_ADDR"; return; fi
  local url="${MONGO_URL:-mongodb://127.0.0.1:27017/}" hp
  hp="${url#mongodb://}"; hp="${hp#*@}"; hp="${hp%%/*}"; hp="${hp%%\?*}"; hp="${hp%%,*}"
  [[ "$hp" == *:* ]] || hp="$hp:27017"
  [[ "$hp" == localhost:* ]] && hp="127.0.0.1:${hp#localhost:}"
  echo "$hp"
}
ADDR="$(listen_addr)"
PING_URL="mongodb://$ADDR/"

# ping URL -> 0 if a MongoDB-compatible server answers.
ping_mongo() {
  if command -v node >/dev/null 2>&1; then
    node "$ROOT/scripts/ping-mongo.mjs" "$1" --timeout "${2:-2000}" -q
  elif [[ -x "$BIN" ]]; then
    "$BIN" ping -q -timeout "${2:-2000}ms" "$1"
  else
    return 1
  fi
}

# The patches, in the order they are applied.
patch_files() {
  local p
  for p in "$PATCH_DIR"/*.patch; do [[ -f "$p" ]] && echo "$p"; done
  return 0
}

source_key() {
  {
    cat "$SRC_DIR/go.mod" "$SRC_DIR/go.sum" "$SRC_DIR"/*.go
    local p
    while IFS= read -r p; do echo "patch=${p##*/}"; cat "$p"; done < <(patch_files)
    echo "tags=$BUILD_TAGS"
    go env GOVERSION GOOS GOARCH 2>/dev/null || true
  } | sha256sum | cut -d' ' -f1
}

# apply_patch FILE DIR: apply a -p1 patch to DIR; fails when any hunk does not apply.
apply_patch() {
  if command -v patch >/dev/null 2>&1; then
    patch -d "$2" -p1 --forward --batch --silent < "$1"
  elif command -v git >/dev/null 2>&1; then
    # The ceiling keeps git from taking an enclosing repository (the cache may live in
    # this repo), where `git apply` would resolve paths against that repository's root.
    (cd "$2" && GIT_CEILING_DIRECTORIES="$(dirname "$2")" git apply -p1 "$1")
  else
    die "neither patch nor git found (needed to patch FerretDB); install patch"
  fi
}

# A fresh copy of the FerretDB module of go.mod with the patches applied; prints its directory.
patched_source() {
  local ver dir src p
  (cd "$SRC_DIR" && GOWORK=off go mod download "$FERRETDB_MODULE") >&2 \
    || die "go mod download $FERRETDB_MODULE failed"
  read -r ver dir < <(cd "$SRC_DIR" && GOWORK=off go list -m -f '{{.Version}} {{.Dir}}' "$FERRETDB_MODULE") \
    || die "go list -m $FERRETDB_MODULE failed"
  [[ -n "$ver" && -d "$dir" ]] || die "FerretDB module not found in the Go module cache (got '$ver' '$dir')"
  src="$CACHE_DIR/src/FerretDB@$ver"
  [[ -d "$src" ]] && chmod -R u+w "$src" && rm -rf "$src"
  mkdir -p "$CACHE_DIR/src"
  cp -R "$dir" "$src"
  chmod -R u+w "$src"   # the module cache is read-only
  while IFS= read -r p; do
    apply_patch "$p" "$src" >&2 || die "patch ${p#"$ROOT"/} does not apply to $FERRETDB_MODULE@$ver"
    log "applied ${p#"$ROOT"/}"
  done < <(patch_files)
  echo "$src"
}

cmd_build() {
  command -v go >/dev/null 2>&1 || die "Go toolchain not found (needed to build tools/ferretdb); install Go >= 1.24"
  local key; key="$(source_key)"
  if [[ -x "$BIN" && -f "$KEY_FILE" && "$(cat "$KEY_FILE")" == "$key" ]]; then
    return 0
  fi
  mkdir -p "$CACHE_DIR"
  # One build at a time per cache dir (they share the patched source copy).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/build.lock"
    flock 9
    if [[ -x "$BIN" && -f "$KEY_FILE" && "$(cat "$KEY_FILE")" == "$key" ]]; then
      exec 9>&-; return 0   # built by the other one meanwhile
    fi
  fi
  log "building embedded FerretDB (first build takes ~1.5 min on 2 cores; cached afterwards) ..."
  local t0=$SECONDS tmp="$BIN.tmp.$$" src modfile="$CACHE_DIR/build/go.mod"
  src="$(patched_source)"
  # go.mod / go.sum of tools/ferretdb plus a replace to the patched copy, beside the cache.
  mkdir -p "$CACHE_DIR/build"
  cp "$SRC_DIR/go.mod" "$modfile"
  cp "$SRC_DIR/go.sum" "${modfile%.mod}.sum"
  (cd "$SRC_DIR" && GOWORK=off go mod edit -replace "$FERRETDB_MODULE=$src" "$modfile") \
    || die "go mod edit of $modfile failed"
  if ! (cd "$SRC_DIR" && GOWORK=off go build -modfile "$modfile" -tags "$BUILD_TAGS" -o "$tmp" .) >&2; then
    rm -f "$tmp"; die "go build of tools/ferretdb failed"
  fi
  mv -f "$tmp" "$BIN"
  echo "$key" > "$KEY_FILE"
  exec 9>&-
  log "built $BIN ($("$BIN" version)) in $((SECONDS - t0)) s"
}

# alive PID: the process exists and is not a zombie.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ "$state" != "Z" && "$state" != "X" ]]
}

# pid of our running FerretDB (from the pid file), or nothing.
running_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid; pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  alive "$pid" || return 1
  # guard against pid reuse: must be our binary
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "ferretdb-embedded" || return 1
  echo "$pid"
}

cmd_status() {
  local pid
  if pid="$(running_pid)"; then
    if ping_mongo "$PING_URL" 2000; then
      echo "ferretdb: running (pid $pid), answering at $PING_URL"; return 0
    fi
    echo "ferretdb: running (pid $pid) but NOT answering at $PING_URL"; return 1
  fi
  echo "ferretdb: not running"; return 1
}

cmd_start() {
  local pid
  if pid="$(running_pid)"; then
    if ping_mongo "$PING_URL" 2000; then
      log "already running (pid $pid) at $PING_URL"; return 0
    fi
    log "pid $pid exists but does not answer; restarting it"
    cmd_stop
  fi
  if ping_mongo "$PING_URL" 1000; then
    die "another MongoDB-compatible server already answers at $PING_URL (not started by this script); stop it or set FERRETDB_LISTEN_ADDR"
  fi
  cmd_build
  mkdir -p "$STATE_DIR"
  # Start in its own session so it outlives the calling shell / npm process.
  echo "=== $(date -u +%FT%TZ) start $ADDR" >> "$LOG_FILE"
  FERRETDB_LOG_LEVEL="${FERRETDB_LOG_LEVEL:-error}" \
    setsid nohup "$BIN" -listen-addr "$ADDR" -state-dir "$STATE_DIR" \
    >> "$LOG_FILE" 2>&1 < /dev/null &
  pid=$!
  echo "$pid" > "$PID_FILE"
  local deadline=$((SECONDS + START_TIMEOUT))
  while (( SECONDS < deadline )); do
    if ! alive "$pid"; then
      rm -f "$PID_FILE"
      tail -n 20 "$LOG_FILE" >&2 || true
      die "FerretDB exited during start-up (log: $LOG_FILE)"
    fi
    if ping_mongo "$PING_URL" 1000; then
      log "started (pid $pid) at $PING_URL, data in $STATE_DIR, log $LOG_FILE"
      return 0
    fi
    sleep 0.2
  done
  tail -n 20 "$LOG_FILE" >&2 || true
  die "FerretDB (pid $pid) did not answer at $PING_URL within ${START_TIMEOUT}s (log: $LOG_FILE)"
}

cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"; log "not running"; return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while alive "$pid" && (( SECONDS < deadline )); do sleep 0.1; done
  if alive "$pid"; then
    log "pid $pid ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while alive "$pid"; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  log "stopped (pid $pid)"
}

cmd_kill() {
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"; log "not running"; return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  while alive "$pid"; do sleep 0.05; done
  rm -f "$PID_FILE"
  log "killed (pid $pid)"
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  path) echo "$BIN" ;;
  *) echo "usage: $0 start|stop|kill|restart|status|build|path" >&2; exit 2 ;;
esac
