#!/usr/bin/env bash
# Starts and stops a single-node Apache Kafka 4.x broker (KRaft, combined broker+controller) on 127.0.0.1.
#
#   scripts/kafka/broker.sh start|stop|status|fetch|bootstrap
#
# Jars come from Maven Central through scripts/kafka/pom.xml into .cache/ (reused when present).
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), FAULTCAST_KAFKA_DIR (state
# folder, default .cache/kafka/run-$KAFKA_PORT), KAFKA_READY_TIMEOUT (90 s), KAFKA_HEAP (512m).
# If KAFKA_BOOTSTRAP is set, that broker is used instead: start waits for it, stop leaves it alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="$repo/.cache"
libs="$cache/kafka/libs"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
state="${FAULTCAST_KAFKA_DIR:-$cache/kafka/run-$port}"
pidfile="$state/broker.pid"
logfile="$state/broker.log"
ready_timeout="${KAFKA_READY_TIMEOUT:-90}"

log() { echo "broker: $*" >&2; }

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 1; }
  log "resolving Kafka jars from Maven Central into $libs"
  rm -rf "$libs"
  mvn -q -B -f "$here/pom.xml" -Dmaven.repo.local="$cache/m2" \
    dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime >&2
  touch "$libs/.complete"
}

running_pid() {
  # Prints the broker's pid if the pid file names a live Kafka process of this state folder.
  [ -f "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $state/server.properties" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  mkdir -p "$state/data"
  cat >"$state/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$state/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=1048588
CONF
}

java_args() {
  printf '%s\0' -Xms128m -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.log.file="$logfile" -cp "$libs/*" "$@"
}

java_cmd() { local args; mapfile -d '' args < <(java_args "$@"); java "${args[@]}"; }

start() {
  if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then
    log "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP set: using that broker"
    wait_ready "${KAFKA_BOOTSTRAP%%,*}"
    return
  fi
  command -v java >/dev/null || { log "java not found: install Java 17 (apt-get install openjdk-17-jre-headless)"; exit 1; }
  if pid="$(running_pid)"; then
    log "already running (pid $pid) on 127.0.0.1:$port"
    wait_ready "127.0.0.1:$port"
    return
  fi
  if port_open "$port" || port_open "$controller_port"; then
    log "port $port or $controller_port is taken by another process: set KAFKA_PORT to a free port"
    exit 1
  fi
  fetch
  write_config
  if [ ! -f "$state/data/meta.properties" ]; then
    java_cmd kafka.tools.StorageTool format -t "$(java_cmd kafka.tools.StorageTool random-uuid)" \
      -c "$state/server.properties" >>"$logfile" 2>&1 || { log "storage format failed: see $logfile"; exit 1; }
  fi
  # setsid: a Ctrl-C in the caller's terminal must not kill the broker before `stop` shuts it down cleanly.
  local args
  mapfile -d '' args < <(java_args kafka.Kafka "$state/server.properties")
  setsid java "${args[@]}" >>"$state/broker.out" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "started pid $(cat "$pidfile") on 127.0.0.1:$port (log: $logfile)"
  wait_ready "127.0.0.1:$port"
}

wait_ready() {
  local host="${1%:*}" p="${1##*:}"
  if ! python3 "$here/ready.py" "$host" "$p" "$ready_timeout"; then
    [ -f "$logfile" ] && tail -n 20 "$logfile" >&2
    exit 1
  fi
  log "ready at $1"
}

stop() {
  if [ -n "${KAFKA_BOOTSTRAP:-}" ]; then log "KAFKA_BOOTSTRAP set: leaving that broker running"; return; fi
  local pid
  if ! pid="$(running_pid)"; then
    rm -f "$pidfile"
    log "not running"
    return
  fi
  kill -TERM "$pid"
  # A controlled shutdown flushes logs and takes a few seconds; SIGKILL only if it hangs.
  for _ in $(seq 1 300); do
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  if [ -d "/proc/$pid" ]; then
    log "pid $pid ignored SIGTERM for 30s: killing it"
    kill -KILL "$pid"
    while [ -d "/proc/$pid" ]; do sleep 0.1; done
  fi
  rm -f "$pidfile"
  for _ in $(seq 1 100); do
    port_open "$port" || port_open "$controller_port" || { log "stopped"; return; }
    sleep 0.1
  done
  log "process gone but port $port still open"
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if pid="$(running_pid)"; then echo "running pid $pid 127.0.0.1:$port"; else echo "stopped"; exit 3; fi ;;
  fetch) fetch ;;
  bootstrap) echo "${KAFKA_BOOTSTRAP:-127.0.0.1:$port}" ;;
  *) echo "usage: $0 start|stop|status|fetch|bootstrap" >&2; exit 2 ;;
esac
