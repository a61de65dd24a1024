#!/usr/bin/env bash
# Runs the soak test (tests/c/soak.c) against a three-broker Kafka cluster
# of its own: starts it (scripts/kafka.sh start --nodes 3 --name
# $SOAK_CLUSTER), creates a fresh topic (3 partitions, replication 3,
# min.insync.replicas 2 from the cluster's defaults), runs the program,
# and stops the cluster whatever happens. `make soak` and
# `make test-soak-short` call it.
#
#   tests/c/soak.sh <soak binary> <kafka_read binary>
#
# Environment: SOAK_CLUSTER (cluster name, default soak), SOAK_LOG (where the
# program's output is copied, default target/c/<cluster>.log), and the
# program's SOAK_* parameters (see tests/c/soak.c), passed through.
# SOAK_KEEP_CLUSTER=1 leaves the cluster running (for repeated runs).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
soak=${1:?usage: tests/c/soak.sh <soak binary> <kafka_read binary>}
kafka_read=${2:?usage: tests/c/soak.sh <soak binary> <kafka_read binary>}
cluster=${SOAK_CLUSTER:-soak}
log=${SOAK_LOG:-$REPO/target/c/$cluster.log}
kafka_sh=$REPO/scripts/kafka.sh

if [ "${SOAK_KEEP_CLUSTER:-}" != 1 ]; then
  trap '"$kafka_sh" stop --name "$cluster" >/dev/null 2>&1 || true' EXIT
fi
bootstrap=$("$kafka_sh" start --nodes 3 --name "$cluster" | sed -n 's/^KAFKA_BOOTSTRAP=//p')
if [ -z "$bootstrap" ]; then
  echo "soak.sh: the Kafka cluster '$cluster' did not start" >&2
  exit 1
fi

topic="soak-$(date +%s)-$$"
"$kafka_sh" run-class org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
  --create --topic "$topic" --partitions 3 --replication-factor 3 >/dev/null

mkdir -p "$(dirname "$log")"
echo "soak.sh: cluster '$cluster' at $bootstrap, topic $topic; output also in $log"
WDPOOL_BROKERS=$bootstrap WDPOOL_KAFKA_READ=$kafka_read SOAK_KAFKA_SH=$kafka_sh SOAK_CLUSTER=$cluster \
  "$soak" "$topic" 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
