#!/usr/bin/env bash
# bench/run.sh full|quick|smoke [driver options...]
#
# Starts a Kafka broker of its own (scripts/kafka.sh, cluster name "bench",
# free loopback ports), creates the topic, runs bench/driver.py with that
# profile, and stops the broker whatever happens (trap on EXIT; Ctrl-C and
# TERM exit through it too). The programs must be built first: `make
# bench-build` (the bench, bench-quick and bench-smoke targets do it).
#
# Environment: WDPOOL_BENCH_KAFKA_NAME (default "bench"), WDPOOL_BENCH_OUT
# (where the driver writes every run as JSON lines; default
# .cache/bench/<profile>-<date>.jsonl).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

profile=${1:?usage: bench/run.sh full|quick|smoke [driver options]}
shift
name=${WDPOOL_BENCH_KAFKA_NAME:-bench}
topic=bench

for f in target/bench/wdpool_bench target/bench/c_pool target/bench/gobench target/release/wdpool-bench-raw; do
  [[ -x $f ]] || { echo "bench/run.sh: $f is missing: run make bench-build" >&2; exit 1; }
done

started=$SECONDS
driver=
cleanup() {
  # The driver kills the program it runs when it gets TERM.
  if [[ -n $driver ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    wait "$driver" 2>/dev/null || true
  fi
  scripts/kafka.sh stop --name "$name"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Old log segments go away within seconds (5M-message runs add up), and
# topics are created only on purpose.
export WDPOOL_KAFKA_PROPS="log.retention.check.interval.ms=5000 log.segment.delete.delay.ms=1000 auto.create.topics.enable=false"
bootstrap=$(scripts/kafka.sh start --name "$name" | sed -n 's/^KAFKA_BOOTSTRAP=//p')
[[ -n $bootstrap ]] || { echo "bench/run.sh: the Kafka broker did not start" >&2; exit 1; }
version=$(grep -ho 'Kafka version: [0-9][0-9.]*' .cache/run/"$name"/node-1/kafka.log 2>/dev/null | tail -1 | sed 's/.*: //')

# One topic, 6 partitions; each partition keeps at most 128 MB.
scripts/kafka.sh run-class org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
  --create --topic "$topic" --partitions 6 --replication-factor 1 \
  --config retention.bytes=134217728 --config segment.bytes=33554432 >/dev/null

mkdir -p .cache/bench
out=${WDPOOL_BENCH_OUT:-.cache/bench/$profile-$(date +%Y%m%d-%H%M%S).jsonl}
echo "bench/run.sh: broker $bootstrap up after $((SECONDS - started)) s; runs recorded in $out" >&2

# In the background, so that a signal to this script is handled at once
# (bash defers traps while a foreground child runs).
python3 bench/driver.py --profile "$profile" --bootstrap "$bootstrap" --topic "$topic" \
  --broker-version "${version:-?}" --out "$out" "$@" &
driver=$!
status=0
wait "$driver" || status=$?
driver=
echo "bench/run.sh: $profile done in $((SECONDS - started)) s (broker start included)" >&2
exit $status
