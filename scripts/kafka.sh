#!/usr/bin/env bash
# Real Apache Kafka (KRaft; every node is broker + controller in one JVM) on
# 127.0.0.1, from Maven Central jars. No Docker, no Kafka tarball.
#
#   scripts/kafka.sh start [--nodes N] [--name NAME] [--secure]
#        fetch if needed, start a cluster of N nodes (1 or 3) on free loopback
#        ports, wait until a metadata request lists every broker, write
#        <run dir>/bootstrap; stdout: KAFKA_BOOTSTRAP=127.0.0.1:p1[,...]
#        (the only line on stdout). If the cluster already runs, or its nodes
#        that do not run were taken down by stop-node / kill-node: starts
#        those again (same ports and data), waits, reprints.
#        --secure: the client listener is SASL_SSL (TLS + SASL/SCRAM-SHA-512)
#        with ACLs (KRaft's StandardAuthorizer); see "Secured mode" below.
#        stdout then also has KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
#        KAFKA_CA_LOCATION, KAFKA_UNTRUSTED_CA_LOCATION, KAFKA_USERS and
#        KAFKA_CLIENT_CONFIG_DIR lines (KAFKA_BOOTSTRAP stays the first).
#   scripts/kafka.sh stop [--name NAME]        stop every node, remove run dir
#   scripts/kafka.sh status [--name NAME]      exit 0 if every node is up and listed
#   scripts/kafka.sh bootstrap [--name NAME]   print 127.0.0.1:p1[,...] (running cluster)
#   scripts/kafka.sh stop-node ID [--name NAME]    TERM one node (KILL after 30 s), keep its data
#   scripts/kafka.sh kill-node ID [--name NAME]    SIGKILL one node (abrupt failure)
#   scripts/kafka.sh start-node ID [--name NAME]   start it again (same ports, config, data),
#                                                  wait until it is listed again
#   scripts/kafka.sh fetch                     download the jars into the cache (once)
#   scripts/kafka.sh run-class CLASS [ARGS...] run a Kafka tool class with the cached jars
#                                              (e.g. org.apache.kafka.tools.TopicCommand)
#
# Environment (all optional):
#   WDPOOL_KAFKA_NAME              cluster name (default: single, or cluster if N > 1)
#   WDPOOL_KAFKA_NODES             node count for start (default: 1; --nodes wins)
#   WDPOOL_KAFKA_DIR               base of run dirs (default: <repo>/.cache/run);
#                                  the run dir is <base>/<name>
#   WDPOOL_KAFKA_PORT              broker port of node 1 (node i: +i-1); default free
#   WDPOOL_KAFKA_CONTROLLER_PORT   controller port of node 1 (node i: +i-1); default free
#   WDPOOL_KAFKA_PORT_RANGE        LO-HI for free ports (default: 20000 up to the
#                                  start of the kernel's ephemeral range, minus one)
#   WDPOOL_KAFKA_START_TIMEOUT     readiness deadline, s (default: 120; 180 if N > 1)
#   WDPOOL_KAFKA_PROPS             extra server.properties lines for every node,
#                                  "key=value" separated by spaces or newlines
#                                  (e.g. "broker.session.timeout.ms=6000"); they win
#   WDPOOL_KAFKA_KEEP=1            `stop` keeps the run dir (logs) around
#   WDPOOL_CACHE                   jar cache root (default: <repo>/.cache)
#   WDPOOL_KAFKA_VERSION           Kafka version (default: 4.1.0)
#   WDPOOL_KAFKA_SECURE=1          same as --secure
#   JAVA_HOME / JAVA               which java to use (needs Java 17+)
#
# Secured mode (start --secure), for tests of TLS, SASL and ACLs:
#   - <run dir>/tls/: a CA (ca.crt: the one clients trust), the broker's key
#     and certificate signed by it for IP 127.0.0.1 and DNS localhost
#     (broker.pem), and a second, unrelated CA (untrusted-ca.crt) for testing
#     a client that must refuse the broker. Made with openssl at start.
#   - the client listener SASL_SSL://127.0.0.1:p (SCRAM-SHA-512) is also the
#     inter-broker listener (user "broker"); the controller listener is
#     SASL_PLAINTEXT with PLAIN (SCRAM credentials live in the metadata log,
#     which a controller must read first). Only "broker" is a super user;
#     allow.everyone.if.no.acl.found=false.
#   - SCRAM-SHA-512 users created at format time (StorageTool --add-scram),
#     each with a fresh random password, and their ACLs (prefixed patterns):
#       alice   All on topics wdpool-*, groups wdpool-*, transactional ids alice-*
#       reader  Read, Describe on topics wdpool-* and groups wdpool-* (no Write)
#       notxn   All on topics wdpool-* and groups wdpool-*; no transactional id
#   - <run dir>/client-<user>.properties (mode 0600): the librdkafka
#     properties a client of that user needs (bootstrap.servers,
#     security.protocol, sasl.mechanisms, sasl.username, sasl.password,
#     ssl.ca.location), one key=value a line. The passwords are written
#     nowhere else but the brokers' server.properties and <run dir>/secrets.env (0600).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

KAFKA_VERSION="${WDPOOL_KAFKA_VERSION:-4.1.0}"
SLF4J_VERSION="2.0.17"
LOG4J_VERSION="2.24.3"          # the log4j-core version kafka_2.13 4.1.0 pulls in
DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

CACHE_ROOT="${WDPOOL_CACHE:-$REPO/.cache}"

set_version() {   # set_version VERSION: where that version's jars live
  KAFKA_VERSION=$1
  KAFKA_HOME="$CACHE_ROOT/kafka-$KAFKA_VERSION"
  LIBS="$KAFKA_HOME/libs"
  FETCH_MARKER="$KAFKA_HOME/.fetched"
}
set_version "$KAFKA_VERSION"

HOST=127.0.0.1
RUN_BASE="${WDPOOL_KAFKA_DIR:-$REPO/.cache/run}"
STOP_TIMEOUT=30
KILL_TIMEOUT=10
POLL_INTERVAL=0.5
RUN_DIR_MARKER=".wdpool-kafka"
STOPPED_MARKER="stopped"   # in a node dir: taken down by stop-node / kill-node
MAX_NODES=9
SECURE_USERS=(alice reader notxn)   # besides "broker", the super user
SCRAM=SCRAM-SHA-512

if [[ -n "${JAVA:-}" ]]; then
  :
elif [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA=java
fi

# JVM options for short-lived tool processes: start fast, stay small.
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

need_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (install openjdk-17-jre-headless, or set JAVA_HOME)"
}

# ---------------------------------------------------------------- fetch

write_pom() {
  cat >"$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka.sh: the runtime closure of the Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>wdpool.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- BrokerApiVersionsCommand (readiness), console producer/consumer, TopicCommand, ... -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- Logging backend. Kafka's own poms resolve slf4j-api 1.7.x, which does
         not find an SLF4J 2 provider: pin slf4j-api 2.x explicitly. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>$SLF4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
}

do_fetch() {
  [[ -f "$FETCH_MARKER" ]] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found (install maven, see scripts/install-deps.sh)"
  mkdir -p "$KAFKA_HOME"
  # Serialize concurrent fetches of the same version.
  exec 9>"$KAFKA_HOME/.lock"
  flock 9
  if [[ -f "$FETCH_MARKER" ]]; then exec 9>&-; return 0; fi

  log "fetching Kafka $KAFKA_VERSION runtime jars from Maven Central into $LIBS"
  local t0=$SECONDS tmp="$KAFKA_HOME/libs.tmp"
  rm -rf "$tmp" "$LIBS"
  write_pom "$KAFKA_HOME/pom.xml"
  MAVEN_OPTS="${MAVEN_OPTS:-} -Djansi.force=false -Djansi.passthrough=false" mvn -q -B -Dstyle.color=never -f "$KAFKA_HOME/pom.xml" "$DEP_PLUGIN:copy-dependencies" \
      -DoutputDirectory="$tmp" -DincludeScope=runtime >&2 \
    || die "mvn copy-dependencies failed for org.apache.kafka:kafka_2.13:$KAFKA_VERSION"
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "fetch did not produce kafka_2.13-$KAFKA_VERSION.jar"
  mv "$tmp" "$LIBS"
  echo "$KAFKA_VERSION" >"$FETCH_MARKER"
  exec 9>&-
  log "fetched $(ls "$LIBS" | wc -l) jars ($(du -sh "$LIBS" | cut -f1)) in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- helpers

tool_jvm() {   # the java command line (no class) for short-lived tool JVMs
  local l4j="$KAFKA_HOME/tools-log4j2.properties"
  [[ -f "$l4j" ]] || write_tools_log4j "$l4j"
  TOOL_CMD=("$JAVA" "${TOOL_JVM_OPTS[@]}" -Dlog4j2.configurationFile="$l4j" -cp "$LIBS/*")
}

run_class() {   # run_class CLASS ARGS...  (tool JVM, warnings only, on stderr)
  need_java
  tool_jvm
  "${TOOL_CMD[@]}" "$@"
}

write_tools_log4j() {
  cat >"$1" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

write_broker_log4j() {
  cat >"$1" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

port_open() {   # port_open PORT: something accepts TCP connections there
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

alive() {   # alive PID: the process exists and is not a zombie
  local st
  st="$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

node_dir() { echo "$RUN_DIR/node-$1"; }

# Prints the pid of the node this script started in DIR, if it is alive
# (and really is our java process, not a recycled pid).
live_pid() {
  local dir=$1 pid
  [[ -f "$dir/kafka.pid" ]] || return 1
  pid="$(cat "$dir/kafka.pid" 2>/dev/null)" || return 1
  is_uint "$pid" || return 1
  alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $dir/server.properties" || return 1
  echo "$pid"
}

safe_wipe() {   # refuse to rm -rf anything that is not one of our run dirs
  local dir=$1
  [[ -n "$dir" && "$dir" != "/" && "$dir" == /* ]] || die "refusing to wipe '$dir' (WDPOOL_KAFKA_DIR must be an absolute path)"
  [[ -e "$dir" ]] || return 0
  if [[ -n "$(ls -A "$dir" 2>/dev/null)" && ! -f "$dir/$RUN_DIR_MARKER" ]]; then
    die "refusing to wipe $dir: it exists, is not empty and was not created by kafka.sh"
  fi
  rm -rf "$dir"
}

new_cluster_id() {   # 16 random bytes, base64url, 22 chars, not starting with '-'
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" != -* ]] && { echo "$id"; return; }
  done
}

# One lock per cluster name: start / stop / start-node / stop-node of the
# same cluster never interleave. fd 8 is closed for the broker JVMs.
take_lock() {
  mkdir -p "$RUN_BASE"
  exec 8>>"$RUN_BASE/.$NAME.lock"
  if ! flock -n 8; then
    log "waiting for another kafka.sh working on cluster '$NAME'"
    flock 8
  fi
}

# ---------------------------------------------------------------- ports

port_range() {   # prints "LO HI"
  local lo hi elo
  if [[ -n "${WDPOOL_KAFKA_PORT_RANGE:-}" ]]; then
    [[ "$WDPOOL_KAFKA_PORT_RANGE" =~ ^([0-9]+)-([0-9]+)$ ]] || die "WDPOOL_KAFKA_PORT_RANGE must be LO-HI"
    lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[2]}
  else
    # Below the ephemeral range: a client's outgoing connection never sits
    # on one of these ports, so a stopped node can always bind its port again.
    read -r elo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || elo=32768
    lo=20000 hi=$((elo - 1))
    ((hi - lo >= 1000)) || { lo=10000; hi=19999; }
  fi
  ((lo >= 1024 && hi <= 65535 && hi - lo >= 20)) || die "bad free-port range $lo-$hi"
  echo "$lo $hi"
}

free_port() {   # free_port " USED ": a random port of the range nothing listens on
  local used=$1 lo hi p tries=0
  read -r lo hi <<<"$(port_range)"
  while ((tries++ < 500)); do
    p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo + 1)))
    [[ "$used" == *" $p "* ]] && continue
    port_open "$p" && continue
    echo "$p"
    return 0
  done
  die "no free port found in $lo-$hi"
}

choose_ports() {   # choose_ports N: sets PORTS_A (broker) and CPORTS_A (controller)
  local n=$1 i p used=" "
  PORTS_A=() CPORTS_A=()
  if [[ -n "${WDPOOL_KAFKA_PORT:-}" ]]; then
    is_uint "$WDPOOL_KAFKA_PORT" || die "WDPOOL_KAFKA_PORT must be a port number"
    for ((i = 0; i < n; i++)); do PORTS_A+=($((WDPOOL_KAFKA_PORT + i))); done
  fi
  if [[ -n "${WDPOOL_KAFKA_CONTROLLER_PORT:-}" ]]; then
    is_uint "$WDPOOL_KAFKA_CONTROLLER_PORT" || die "WDPOOL_KAFKA_CONTROLLER_PORT must be a port number"
    for ((i = 0; i < n; i++)); do CPORTS_A+=($((WDPOOL_KAFKA_CONTROLLER_PORT + i))); done
  fi
  for p in "${PORTS_A[@]}" "${CPORTS_A[@]}"; do
    [[ "$used" == *" $p "* ]] && die "port $p given twice (WDPOOL_KAFKA_PORT and WDPOOL_KAFKA_CONTROLLER_PORT ranges overlap)"
    port_open "$p" && die "port $p on $HOST is already in use by another process"
    used+="$p "
  done
  while ((${#PORTS_A[@]} < n)); do p="$(free_port "$used")"; PORTS_A+=("$p"); used+="$p "; done
  while ((${#CPORTS_A[@]} < n)); do p="$(free_port "$used")"; CPORTS_A+=("$p"); used+="$p "; done
}

bootstrap_of() {   # bootstrap_of ID...: 127.0.0.1:p[,127.0.0.1:p...]
  local id out=""
  for id in "$@"; do out+="${out:+,}$HOST:${PORTS_A[id - 1]}"; done
  echo "$out"
}

# ---------------------------------------------------------------- cluster state

# <run dir>/cluster.env, written by start: VERSION, CLUSTER_ID, NODES,
# PORTS and CPORTS (space separated, node 1 first).
save_cluster() {
  cat >"$RUN_DIR/cluster.env" <<EOF
VERSION=$KAFKA_VERSION
CLUSTER_ID=$CLUSTER_ID
NODES=$C_NODES
PORTS="${PORTS_A[*]}"
CPORTS="${CPORTS_A[*]}"
SECURE=$C_SECURE
EOF
}

load_cluster() {   # sets C_NODES, C_SECURE, CLUSTER_ID, PORTS_A, CPORTS_A, version
  local f="$RUN_DIR/cluster.env" VERSION="" NODES="" PORTS="" CPORTS="" SECURE=0
  [[ -f "$f" ]] || return 1
  # shellcheck disable=SC1090
  source "$f"
  is_uint "$NODES" || return 1
  C_NODES=$NODES
  C_SECURE=$SECURE
  read -r -a PORTS_A <<<"$PORTS"
  read -r -a CPORTS_A <<<"$CPORTS"
  ((${#PORTS_A[@]} == C_NODES && ${#CPORTS_A[@]} == C_NODES)) || return 1
  [[ -n "$VERSION" ]] && set_version "$VERSION"
  return 0
}

all_ids() { seq 1 "$C_NODES"; }

# ---------------------------------------------------------------- secured mode

# The listener lines of node ID's server.properties.
listener_config() {
  local id=$1 port=${PORTS_A[$1 - 1]} cport=${CPORTS_A[$1 - 1]}
  if ((!C_SECURE)); then
    cat <<EOF
listeners=PLAINTEXT://$HOST:$port,CONTROLLER://$HOST:$cport
advertised.listeners=PLAINTEXT://$HOST:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
    return 0
  fi
  local tls="$RUN_DIR/tls"
  # shellcheck disable=SC1091
  source "$RUN_DIR/secrets.env"
  cat <<EOF
listeners=SASL_SSL://$HOST:$port,CONTROLLER://$HOST:$cport
advertised.listeners=SASL_SSL://$HOST:$port
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=$SCRAM
sasl.mechanism.inter.broker.protocol=$SCRAM
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$PW_broker";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="broker" password="$PW_controller" user_broker="$PW_controller";
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$PW_keystore
ssl.key.password=$PW_keystore
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
ssl.client.auth=none
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:broker
allow.everyone.if.no.acl.found=false
EOF
}

new_secret() { echo "pw-$(openssl rand -hex 16)"; }

# A self-signed CA: make_ca DIR NAME CN -> DIR/NAME.key, DIR/NAME.crt
make_ca() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$3" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$1/$2.key" -out "$1/$2.crt" 2>/dev/null
}

# Certificates (openssl), passwords, the tools' admin.properties and one
# client-<user>.properties per user, in the run dir. Called by a fresh start.
make_security() {
  local tls="$RUN_DIR/tls" user
  command -v openssl >/dev/null 2>&1 || die "openssl not found (install openssl, see scripts/install-deps.sh)"
  mkdir -p "$tls"
  (
    umask 077
    {
      for user in broker controller keystore "${SECURE_USERS[@]}"; do echo "PW_$user=$(new_secret)"; done
    } >"$RUN_DIR/secrets.env"
  )
  make_ca "$tls" ca "wdpool test CA" || die "openssl: making the CA failed"
  make_ca "$tls" untrusted-ca "wdpool untrusted CA" || die "openssl: making the untrusted CA failed"
  rm -f "$tls/untrusted-ca.key"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null \
    && openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 30 \
         -extfile <(printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' "$HOST") \
         -out "$tls/broker.crt" 2>/dev/null \
    || die "openssl: making the broker certificate failed"
  # shellcheck disable=SC1091
  source "$RUN_DIR/secrets.env"
  openssl pkcs12 -export -in "$tls/broker.crt" -inkey "$tls/broker.key" -certfile "$tls/ca.crt" -name broker \
    -passout "pass:$PW_keystore" -out "$tls/broker.p12" || die "openssl: making the broker keystore failed"
  chmod 600 "$tls"/*.key "$tls/broker.p12"
  (
    umask 077
    cat >"$RUN_DIR/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=$SCRAM
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$PW_broker";
ssl.truststore.type=PEM
ssl.truststore.location=$tls/ca.crt
EOF
    for user in "${SECURE_USERS[@]}"; do
      local pw="PW_$user"
      cat >"$RUN_DIR/client-$user.properties" <<EOF
bootstrap.servers=$(bootstrap_of $(all_ids))
security.protocol=SASL_SSL
sasl.mechanisms=$SCRAM
sasl.username=$user
sasl.password=${!pw}
ssl.ca.location=$tls/ca.crt
EOF
    done
  )
}

# scram_args ARRAY: StorageTool's --add-scram arguments for every user.
scram_args() {
  local -n into=$1
  local user pw
  # shellcheck disable=SC1091
  source "$RUN_DIR/secrets.env"
  for user in broker "${SECURE_USERS[@]}"; do
    pw="PW_$user"
    into+=(--add-scram "$SCRAM=[name=$user,password=${!pw}]")
  done
}

acl() {   # acl ARGS...: AclCommand --add as the super user
  tool_jvm
  timeout 60 "${TOOL_CMD[@]}" org.apache.kafka.tools.AclCommand --bootstrap-server "$(bootstrap_of $(all_ids))" \
    --command-config "$RUN_DIR/admin.properties" --add --resource-pattern-type prefixed "$@" >>"$RUN_DIR/acls.log" 2>&1
}

# The ACLs of the users (see "Secured mode" at the top), three tool JVMs in
# parallel; the metadata log keeps them across restarts.
secure_finish() {
  local pids=() pid ok=1
  acl --allow-principal User:alice --allow-principal User:notxn --operation All --topic wdpool- --group wdpool- & pids+=($!)
  acl --allow-principal User:alice --operation All --transactional-id alice- & pids+=($!)
  acl --allow-principal User:reader --operation Read --operation Describe --topic wdpool- --group wdpool- & pids+=($!)
  for pid in "${pids[@]}"; do wait "$pid" || ok=0; done
  if ((!ok)); then
    log "creating the ACLs failed:"
    cat "$RUN_DIR/acls.log" >&2
    return 1
  fi
  log "ACLs of ${SECURE_USERS[*]} created"
}

# ---------------------------------------------------------------- node

write_config() {   # write_config ID VOTERS
  local id=$1 voters=$2 dir rf isr
  dir="$(node_dir "$id")"
  if ((C_NODES >= 3)); then rf=3 isr=2; else rf=$C_NODES isr=1; fi
  cat >"$dir/server.properties" <<EOF
# Generated by scripts/kafka.sh (cluster '$NAME', node $id of $C_NODES)
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
$(listener_config "$id")
controller.listener.names=CONTROLLER
log.dirs=$dir/data

num.partitions=3
default.replication.factor=$rf
min.insync.replicas=$isr
auto.create.topics.enable=true
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0

# small machine: fewer threads
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  local kv kvs=()
  if [[ -n "${WDPOOL_KAFKA_PROPS:-}" ]]; then
    echo "# WDPOOL_KAFKA_PROPS" >>"$dir/server.properties"
    read -r -d '' -a kvs <<<"$WDPOOL_KAFKA_PROPS" || true
    for kv in "${kvs[@]}"; do
      [[ "$kv" =~ ^[A-Za-z0-9._-]+=.*$ ]] || die "WDPOOL_KAFKA_PROPS: '$kv' is not key=value"
      echo "$kv" >>"$dir/server.properties"
    done
  fi
  ((C_SECURE)) && chmod 600 "$dir/server.properties"   # it holds the brokers' passwords
}

format_storage() {   # format_storage ID: in the background; the caller waits
  local dir
  dir="$(node_dir "$1")"
  # Static quorum (controller.quorum.voters): plain `format`, no --standalone
  # (that flag is for the dynamic quorum, controller.quorum.bootstrap.servers).
  local scram=()
  ((C_SECURE)) && scram_args scram
  run_class kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$dir/server.properties" "${scram[@]}" \
    >"$dir/format.log" 2>&1
}

declare -A LAUNCH_PID=() LAUNCH_OFF=()

launch_node() {   # launch_node ID: start the JVM in the background, write pid
  local id=$1 dir pid
  dir="$(node_dir "$id")"
  mkdir -p "$dir/logs"
  write_broker_log4j "$dir/log4j2.properties"
  # kafka.log is appended to across restarts; readiness only looks at what
  # this launch wrote.
  touch "$dir/kafka.log"
  rm -f "$dir/$STOPPED_MARKER"
  LAUNCH_OFF[$id]="$(stat -c %s "$dir/kafka.log")"
  echo "=== kafka.sh: launching node $id ($(date '+%F %T'))" >>"$dir/kafka.log"
  nohup "$JAVA" -Xmx512m -Xms512m -server \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -Dkafka.logs.dir="$dir/logs" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    >>"$dir/kafka.log" 2>&1 </dev/null 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$dir/kafka.pid"
  disown "$pid"   # no "Killed" job report from this shell if the node dies
  LAUNCH_PID[$id]=$pid
  log "launched node $id (pid $pid, broker $HOST:${PORTS_A[id - 1]}, controller $HOST:${CPORTS_A[id - 1]})"
}

node_started() {   # the node launched by this run logged "Kafka Server started"
  local dir
  dir="$(node_dir "$1")"
  tail -c +"$((LAUNCH_OFF[$1] + 1))" "$dir/kafka.log" 2>/dev/null | grep -q "Kafka Server started"
}

# nodes_listed ID...: a metadata request through those nodes' broker ports
# answers and lists each of them, and each answers ApiVersions
# (BrokerApiVersionsCommand sends Metadata, then ApiVersions to every broker
# listed: "127.0.0.1:p (id: 2 rack: null isFenced: false) -> (" or "-> ERROR").
nodes_listed() {
  local id out
  [[ -f "$FETCH_MARKER" ]] || return 1
  for id in "$@"; do port_open "${PORTS_A[id - 1]}" || return 1; done
  tool_jvm
  local auth=()
  ((C_SECURE)) && auth=(--command-config "$RUN_DIR/admin.properties")
  out="$(timeout 30 "${TOOL_CMD[@]}" org.apache.kafka.tools.BrokerApiVersionsCommand \
           --bootstrap-server "$(bootstrap_of "$@")" "${auth[@]}" 2>/dev/null)" || return 1
  for id in "$@"; do
    grep -qE "\(id: $id rack[^)]*\) -> \(" <<<"$out" || return 1
  done
}

# wait_listed ID...: wait (up to START_TIMEOUT) until nodes_listed ID...
# Nodes launched by this run are watched: 0 ready, 1 timeout, 2 one exited
# (DIED=its id). The metadata check (a JVM, about 1-2 s of CPU) runs once the
# launched nodes have logged "Kafka Server started", or every 5 s after 30 s.
wait_listed() {
  local id gate t0=$SECONDS last_try=-100 deadline=$((SECONDS + START_TIMEOUT))
  DIED=""
  while :; do
    for id in "$@"; do
      [[ -n "${LAUNCH_PID[$id]:-}" ]] || continue
      alive "${LAUNCH_PID[$id]}" || { DIED=$id; return 2; }
    done
    gate=1
    for id in "$@"; do
      [[ -n "${LAUNCH_OFF[$id]:-}" ]] || continue
      node_started "$id" || { gate=0; break; }
    done
    if ((gate)) || ((SECONDS - t0 >= 30 && SECONDS - last_try >= 5)); then
      last_try=$SECONDS
      if nodes_listed "$@"; then
        log "node(s) $* of '$NAME' listed after $((SECONDS - t0))s"
        return 0
      fi
    fi
    ((SECONDS >= deadline)) && return 1
    sleep "$POLL_INTERVAL"
  done
}

show_tail() {   # show_tail ID
  local dir
  dir="$(node_dir "$1")"
  log "tail of $dir/kafka.log:"
  tail -n 40 "$dir/kafka.log" >&2 || true
}

# signal_nodes SIGNAL ID...: signal each live node, wait for all of them
# (polling their pids), KILL what is left after STOP_TIMEOUT (TERM) or
# KILL_TIMEOUT (KILL). Data is kept; pid files are removed.
signal_nodes() {
  local sig=$1 id pid deadline ids=() pids=() left
  shift
  for id in "$@"; do
    if pid="$(live_pid "$(node_dir "$id")")"; then
      log "node $id of '$NAME': SIG$sig to pid $pid"
      kill -"$sig" "$pid" 2>/dev/null || true
      ids+=("$id") pids+=("$pid")
    fi
  done
  if [[ "$sig" == KILL ]]; then deadline=$((SECONDS + KILL_TIMEOUT)); else deadline=$((SECONDS + STOP_TIMEOUT)); fi
  while :; do
    left=()
    for pid in "${pids[@]}"; do alive "$pid" && left+=("$pid"); done
    ((${#left[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      [[ "$sig" == KILL ]] && die "pid(s) ${left[*]} survived SIGKILL for ${KILL_TIMEOUT}s"
      log "pid(s) ${left[*]} did not exit within ${STOP_TIMEOUT}s; sending KILL"
      kill -KILL "${left[@]}" 2>/dev/null || true
      sig=KILL deadline=$((SECONDS + KILL_TIMEOUT))
    fi
    sleep 0.2
  done
  for id in "$@"; do rm -f "$(node_dir "$id")/kafka.pid"; done
}

# ---------------------------------------------------------------- commands

resolve_name() {
  if [[ -z "$NAME" ]]; then
    if ((${NODES:-1} > 1)); then NAME=cluster; else NAME=single; fi
  fi
  [[ "$NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "bad cluster name '$NAME' (letters, digits, . _ -)"
  RUN_DIR="$RUN_BASE/$NAME"
}

set_timeout() {   # set_timeout NODES
  if [[ -n "${WDPOOL_KAFKA_START_TIMEOUT:-}" ]]; then
    START_TIMEOUT=$WDPOOL_KAFKA_START_TIMEOUT
  elif (($1 > 1)); then
    START_TIMEOUT=180
  else
    START_TIMEOUT=120
  fi
  is_uint "$START_TIMEOUT" || die "WDPOOL_KAFKA_START_TIMEOUT must be a number of seconds"
}

resumable() {   # each node runs or was taken down by stop-node / kill-node
  local id
  for id in $(all_ids); do
    live_pid "$(node_dir "$id")" >/dev/null || [[ -f "$(node_dir "$id")/$STOPPED_MARKER" ]] || return 1
  done
}

live_ids() {   # the ids of the nodes that run
  local id
  for id in $(all_ids); do live_pid "$(node_dir "$id")" >/dev/null && echo "$id"; done
  return 0
}

print_bootstrap() {
  echo "KAFKA_BOOTSTRAP=$(cat "$RUN_DIR/bootstrap")"
  ((C_SECURE)) || return 0
  echo "KAFKA_SECURITY_PROTOCOL=SASL_SSL"
  echo "KAFKA_SASL_MECHANISM=$SCRAM"
  echo "KAFKA_CA_LOCATION=$RUN_DIR/tls/ca.crt"
  echo "KAFKA_UNTRUSTED_CA_LOCATION=$RUN_DIR/tls/untrusted-ca.crt"
  echo "KAFKA_USERS=${SECURE_USERS[*]}"
  echo "KAFKA_CLIENT_CONFIG_DIR=$RUN_DIR"
}

# One attempt at a fresh cluster. 0 ready; 1 failed (nodes stopped, dir
# kept); 3 a node could not bind its port (nodes stopped): try other ports.
fresh_attempt() {
  local id voters="" rc pids=()
  safe_wipe "$RUN_DIR"
  mkdir -p "$RUN_DIR"
  touch "$RUN_DIR/$RUN_DIR_MARKER"
  choose_ports "$C_NODES"
  CLUSTER_ID="$(new_cluster_id)"
  ((C_SECURE)) && make_security
  for id in $(all_ids); do voters+="${voters:+,}$id@$HOST:${CPORTS_A[id - 1]}"; done
  for id in $(all_ids); do
    mkdir -p "$(node_dir "$id")/data"
    write_config "$id" "$voters"
  done
  save_cluster
  for id in $(all_ids); do format_storage "$id" & pids+=($!); done
  for id in $(all_ids); do
    wait "${pids[id - 1]}" || { cat "$(node_dir "$id")/format.log" >&2; die "StorageTool format failed for node $id"; }
  done
  for id in $(all_ids); do launch_node "$id"; done
  log "started Kafka $KAFKA_VERSION cluster '$NAME' ($C_NODES node(s), cluster id $CLUSTER_ID, dir $RUN_DIR); waiting up to ${START_TIMEOUT}s"
  rc=0
  wait_listed $(all_ids) || rc=$?
  if ((rc == 0 && C_SECURE)); then
    secure_finish || { signal_nodes KILL $(all_ids); return 1; }
  fi
  ((rc == 0)) && return 0
  if ((rc == 2)); then
    log "node $DIED exited during startup"
    show_tail "$DIED"
    if grep -qE "BindException|Address already in use" "$(node_dir "$DIED")/kafka.log"; then
      signal_nodes KILL $(all_ids)
      return 3
    fi
  else
    log "cluster '$NAME' not ready after ${START_TIMEOUT}s"
    for id in $(all_ids); do show_tail "$id"; done
  fi
  log "stopping the nodes that did not become ready (logs kept in $RUN_DIR)"
  signal_nodes KILL $(all_ids)
  return 1
}

cmd_start() {
  local id live rc attempt d
  [[ $# -eq 0 ]] || die "start takes no arguments (got: $*)"
  need_java
  take_lock
  if load_cluster && live="$(live_ids)" && { [[ -n "$live" ]] || resumable; }; then
    # Started by us before, and some node still runs or every node that does
    # not was taken down by stop-node / kill-node: bring up what is not
    # running (same ports, config, data), wait, reprint.
    if [[ -n "${NODES:-}" && "$NODES" != "$C_NODES" ]]; then
      die "cluster '$NAME' is running with $C_NODES node(s), not $NODES (stop it first, or use another --name)"
    fi
    ((SECURE == C_SECURE)) || die "cluster '$NAME' runs $( ((C_SECURE)) && echo secured || echo plain), not as asked (stop it first, or use another --name)"
    set_timeout "$C_NODES"
    do_fetch >&2
    for id in $(all_ids); do
      grep -qx "$id" <<<"$live" && continue
      check_node_ports "$id"
      launch_node "$id"
    done
    rc=0
    wait_listed $(all_ids) || rc=$?
    if ((rc != 0)); then
      [[ -n "$DIED" ]] && show_tail "$DIED"
      # Take down again what this call started (their data stays).
      for id in "${!LAUNCH_PID[@]}"; do
        signal_nodes KILL "$id"
        touch "$(node_dir "$id")/$STOPPED_MARKER"
      done
      die "cluster '$NAME' is not ready after ${START_TIMEOUT}s"
    fi
    bootstrap_of $(all_ids) >"$RUN_DIR/bootstrap"
    print_bootstrap
    return 0
  fi

  for d in "$RUN_DIR"/node-*; do
    [[ -d "$d" ]] && live_pid "$d" >/dev/null \
      && die "a node of '$NAME' runs in $d but $RUN_DIR/cluster.env is missing or broken: run stop first"
  done
  C_NODES=${NODES:-1}
  C_SECURE=$SECURE
  set_timeout "$C_NODES"
  do_fetch >&2   # stdout carries only the KAFKA_*=... lines, for eval
  for attempt in 1 2 3; do
    rc=0
    fresh_attempt || rc=$?
    if ((rc == 0)); then
      bootstrap_of $(all_ids) >"$RUN_DIR/bootstrap"
      print_bootstrap
      return 0
    fi
    ((rc == 3)) && [[ -z "${WDPOOL_KAFKA_PORT:-}" || -z "${WDPOOL_KAFKA_CONTROLLER_PORT:-}" ]] && ((attempt < 3)) || exit 1
    log "a port was taken meanwhile; trying again with other ports"
  done
  exit 1
}

check_node_ports() {   # the ports of node ID are not taken by someone else
  local p
  for p in "${PORTS_A[$1 - 1]}" "${CPORTS_A[$1 - 1]}"; do
    port_open "$p" && die "port $p of node $1 on $HOST is in use by another process"
  done
  return 0
}

need_cluster() {
  load_cluster || die "no cluster '$NAME' (no $RUN_DIR/cluster.env); run: scripts/kafka.sh start${NODES:+ --nodes $NODES} --name $NAME"
}

need_id() {   # need_id ARGS...: exactly one node id of the cluster
  [[ $# -eq 1 ]] || die "expected one node id (1..$C_NODES)"
  is_uint "$1" && (($1 >= 1 && $1 <= C_NODES)) || die "node id '$1' is not in 1..$C_NODES for cluster '$NAME'"
  ID=$1
}

# A broker started by the previous version of this script (one node, run
# dir /tmp/wdpool-kafka-<port> or $WDPOOL_KAFKA_DIR itself, kafka.pid and
# server.properties at its top). Only looked for when WDPOOL_KAFKA_PORT or
# WDPOOL_KAFKA_DIR says where: never the old default port on its own.
stop_legacy() {
  local dir="" pid deadline
  if [[ -n "${WDPOOL_KAFKA_DIR:-}" ]]; then
    dir=$WDPOOL_KAFKA_DIR
  elif [[ -n "${WDPOOL_KAFKA_PORT:-}" ]]; then
    dir=/tmp/wdpool-kafka-$WDPOOL_KAFKA_PORT
  fi
  [[ -n "$dir" && -f "$dir/$RUN_DIR_MARKER" && -f "$dir/server.properties" ]] || return 0
  if pid="$(live_pid "$dir")"; then
    log "stopping the broker of an older kafka.sh in $dir (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    if alive "$pid"; then
      log "pid $pid did not exit within ${STOP_TIMEOUT}s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + KILL_TIMEOUT))
      while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
    fi
  fi
  if [[ "${WDPOOL_KAFKA_KEEP:-0}" == 1 ]]; then rm -f "$dir/kafka.pid"; else safe_wipe "$dir"; fi
}

cmd_stop() {
  local dirs=() d
  [[ $# -eq 0 ]] || die "stop takes no arguments (got: $*)"
  take_lock
  stop_legacy
  if [[ ! -d "$RUN_DIR" ]]; then
    log "cluster '$NAME': nothing to stop"
    return 0
  fi
  # Every node-<id> dir, even without (or with a broken) cluster.env.
  for d in "$RUN_DIR"/node-*; do [[ -d "$d" ]] && dirs+=("${d##*/node-}"); done
  ((${#dirs[@]} == 0)) || signal_nodes TERM "${dirs[@]}"
  if [[ "${WDPOOL_KAFKA_KEEP:-0}" == 1 ]]; then
    rm -f "$RUN_DIR/bootstrap"
    log "cluster '$NAME' stopped; kept $RUN_DIR"
  else
    safe_wipe "$RUN_DIR"
    log "cluster '$NAME' stopped; removed $RUN_DIR"
  fi
}

cmd_status() {
  local id pid ok=1 live=""
  [[ $# -eq 0 ]] || die "status takes no arguments (got: $*)"
  if ! load_cluster; then
    echo "cluster '$NAME': not running (no $RUN_DIR/cluster.env)"
    return 1
  fi
  for id in $(all_ids); do
    if pid="$(live_pid "$(node_dir "$id")")"; then
      echo "node $id: running (pid $pid), broker $HOST:${PORTS_A[id - 1]}"
      live+=" $id"
    else
      echo "node $id: not running"
      ok=0
    fi
  done
  if ((ok)) && nodes_listed $(all_ids); then
    echo "cluster '$NAME': running and ready: KAFKA_BOOTSTRAP=$(bootstrap_of $(all_ids))"
    return 0
  fi
  echo "cluster '$NAME': not ready"
  return 1
}

cmd_bootstrap() {
  [[ $# -eq 0 ]] || die "bootstrap takes no arguments (got: $*)"
  need_cluster
  [[ -f "$RUN_DIR/bootstrap" ]] || die "cluster '$NAME' has no bootstrap file (not started, or not ready)"
  [[ -n "$(live_ids)" ]] || die "no node of cluster '$NAME' is running"
  cat "$RUN_DIR/bootstrap"
}

cmd_stop_node() {   # cmd_stop_node TERM|KILL ID
  local sig=$1
  shift
  need_cluster
  need_id "$@"
  [[ "$sig" == KILL ]] || take_lock
  if ! live_pid "$(node_dir "$ID")" >/dev/null; then
    log "node $ID of '$NAME' is not running"
    return 0
  fi
  signal_nodes "$sig" "$ID"
  touch "$(node_dir "$ID")/$STOPPED_MARKER"
  log "node $ID of '$NAME' is down (data kept; start-node $ID brings it back)"
}

cmd_start_node() {
  local rc
  need_cluster
  need_id "$@"
  set_timeout "$C_NODES"
  need_java
  take_lock
  if ! live_pid "$(node_dir "$ID")" >/dev/null; then
    [[ -f "$(node_dir "$ID")/server.properties" ]] || die "node $ID of '$NAME' has no config ($(node_dir "$ID"))"
    [[ -f "$FETCH_MARKER" ]] || die "Kafka $KAFKA_VERSION jars are gone from $LIBS"
    check_node_ports "$ID"
    launch_node "$ID"
  fi
  rc=0
  wait_listed "$ID" || rc=$?
  ((rc == 0)) && return 0
  if ((rc == 2)); then log "node $ID exited during startup"; else log "node $ID not listed after ${START_TIMEOUT}s"; fi
  show_tail "$ID"
  [[ -n "${LAUNCH_PID[$ID]:-}" ]] && signal_nodes KILL "$ID"
  exit 1
}

usage() {
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
  exit 2
}

# ---------------------------------------------------------------- main

CMD="${1:-}"
[[ $# -gt 0 ]] && shift
NAME="${WDPOOL_KAFKA_NAME:-}"
NODES="${WDPOOL_KAFKA_NODES:-}"
SECURE=0
[[ "${WDPOOL_KAFKA_SECURE:-0}" == 1 ]] && SECURE=1
C_SECURE=0
ARGS=()

if [[ "$CMD" != run-class ]]; then
  while (($#)); do
    case "$1" in
      --name) [[ $# -ge 2 ]] || die "--name needs a value"; NAME=$2; shift 2 ;;
      --name=*) NAME=${1#--name=}; shift ;;
      --nodes) [[ $# -ge 2 ]] || die "--nodes needs a value"; NODES=$2; shift 2 ;;
      --nodes=*) NODES=${1#--nodes=}; shift ;;
      --secure) SECURE=1; shift ;;
      -h | --help) usage ;;
      --) shift; ARGS+=("$@"); break ;;
      -*) die "unknown option $1" ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
  if [[ -n "$NODES" ]]; then
    is_uint "$NODES" && ((NODES >= 1 && NODES <= MAX_NODES)) || die "--nodes / WDPOOL_KAFKA_NODES must be 1..$MAX_NODES (got '$NODES')"
  fi
  resolve_name
fi

case "$CMD" in
  fetch)      do_fetch; echo "KAFKA_LIBS=$LIBS" ;;
  start)      cmd_start "${ARGS[@]}" ;;
  stop)       cmd_stop "${ARGS[@]}" ;;
  status)     cmd_status "${ARGS[@]}" ;;
  bootstrap)  cmd_bootstrap "${ARGS[@]}" ;;
  stop-node)  cmd_stop_node TERM "${ARGS[@]}" ;;
  kill-node)  cmd_stop_node KILL "${ARGS[@]}" ;;
  start-node) cmd_start_node "${ARGS[@]}" ;;
  run-class)  [[ $# -ge 1 ]] || usage; do_fetch; run_class "$@" ;;
  *)          usage ;;
esac
