#!/usr/bin/env python3
"""The driver of `make bench`: runs every variant of every measure,
interleaved (in each round, the variants of a group run one after the other,
in an order that rotates from round to round), and prints a table of medians,
ratios (wdpool / baseline) and spreads. Python 3 standard library only.

    bench/driver.py --profile full|quick|smoke --bootstrap HOST:PORT --topic bench

bench/run.sh starts the broker, creates the topic and calls this. Each
program prints one line "RESULT key=value ..."; for the throughput, latency
and close runs the driver also reads the topic's high watermarks before and
after (bench/raw `offsets`): "delivered" is what the broker stored, minus the
warm-up messages the program declares, and a run that did not deliver
everything it sent fails its check.

The smoke profile asserts that every variant ran and delivered everything
(never a speed) and exits non-zero otherwise; the last line is
"bench-smoke: N passed, M failed".
"""

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time

# ---------------------------------------------------------------- settings

# Row 1, 2, 3, 4 and 8: every client, same settings (librdkafka properties;
# franz-go gets the equivalent flags below).
BASE = ["acks=all", "linger.ms=5", "enable.idempotence=true"]
# Row 5: produce_sync latency.
LATENCY = ["acks=all", "linger.ms=0", "enable.idempotence=true"]
# Row 8c: the librdkafka settings wdpool documents for throughput (with
# produce_many_async of 100 messages per `with`).
BEST = [
    "acks=all",
    "enable.idempotence=true",
    "linger.ms=50",
    "batch.size=1000000",
    "batch.num.messages=100000",
    "queue.buffering.max.messages=1000000",
    "compression.codec=lz4",
]
# franz-go on row 1's settings: acks=all and idempotent (its default),
# linger 5 ms, no compression (librdkafka's default), librdkafka's default
# queue of 100,000 messages.
FRANZ_SAME = ["-linger", "5ms", "-compression", "none", "-max-buffered", "100000"]
# franz-go at its best on this workload.
FRANZ_BEST = ["-linger", "20ms", "-compression", "lz4", "-max-buffered", "1000000"]

# rb_ops / go_with_ops: empty `with`s of the Ruby / Go binding per run
# (all threads together); go_async_messages: the messages of the Go
# binding's ProduceAsync run (a Delivery per message makes it the slowest
# throughput run: fewer messages keep `make bench` within its time).
PROFILES = {
    "full": dict(rounds=3, messages=5_000_000, txn_seconds=5, lat_messages=2000, lat_warmup=100,
                 lat_repeat=3, with_ops=5_000_000, with_ops_2t=2_000_000, close_repeat=5, timeout=900,
                 rb_ops=600_000, go_with_ops=4_000_000, go_async_messages=1_000_000),
    "quick": dict(rounds=1, messages=1_000_000, txn_seconds=3, lat_messages=500, lat_warmup=50,
                  lat_repeat=2, with_ops=1_000_000, with_ops_2t=500_000, close_repeat=3, timeout=300,
                  rb_ops=300_000, go_with_ops=1_000_000, go_async_messages=500_000),
    "smoke": dict(rounds=1, messages=2_000, txn_seconds=0.5, lat_messages=20, lat_warmup=5,
                  lat_repeat=1, with_ops=2_000, with_ops_2t=2_000, close_repeat=1, timeout=120,
                  rb_ops=2_000, go_with_ops=2_000, go_async_messages=2_000),
}


def sets(flag, props):
    out = []
    for p in props:
        out += [flag, p]
    return out


# ---------------------------------------------------------------- variants

class Variant:
    """One program invocation, run once per round."""

    def __init__(self, key, kind, argv, watermarks=False, env=None, lib=None):
        self.key, self.kind, self.argv, self.watermarks = key, kind, argv, watermarks
        # env: added to the environment; lib: the libwdpool.so a binding
        # must have loaded (its RESULT line says lib=...).
        self.env, self.lib = env or {}, lib


def variants(a, p):
    """The groups of variants, in the order they run; each group is
    interleaved within a round."""
    wd, raw, cpool, gob = a.wdpool_bench, a.raw, a.c_pool, a.gobench
    conn = ["--bootstrap", a.bootstrap, "--topic", a.topic]
    gconn = ["-bootstrap", a.bootstrap, "-topic", a.topic]
    n = str(p["messages"])
    groups = []
    # The bindings' rows run on the release library: the Go binding was
    # linked against it (make bench-pc), Ruby loads it through WDPOOL_LIB.
    rel = a.release_lib
    ruby_env = {"WDPOOL_LIB": rel, "PKG_CONFIG_LIBDIR": "/nonexistent"}

    def tp_go(mode, messages, per_with=1):
        label = mode if per_with == 1 else f"{mode}{per_with}"
        return Variant(f"tp2.go.{label}", "throughput",
                       [gob, "-client", "wdpool", "-mode", mode, "-variant", label, *gconn, "-messages", str(messages),
                        "-threads", "4", "-producers", "2", "-per-with", str(per_with), *sets("-set", BASE)],
                       True, lib=rel)

    def tp_wd(pool, per_with, props, many=False):
        return [wd, "throughput", *conn, "--messages", n, "--threads", "4", "--pool", str(pool),
                "--per-with", str(per_with), *(["--many"] if many else []), *sets("--set", props)]

    def tp_raw(producers, props):
        return [raw, "throughput", *conn, "--messages", n, "--threads", "4", "--producers", str(producers),
                *sets("--set", props)]

    groups.append([
        Variant("tp2.wdpool.with1", "throughput", tp_wd(2, 1, BASE), True),
        Variant("tp2.wdpool.with100", "throughput", tp_wd(2, 100, BASE), True),
        Variant("tp2.raw", "throughput", tp_raw(2, BASE), True),
        Variant("tp2.confluent", "throughput",
                [gob, "-client", "confluent", *gconn, "-messages", n, "-threads", "4", "-producers", "2",
                 *sets("-set", BASE)], True),
        # The like of ProduceAsync + Wait: a delivery channel per message,
        # waited in order, as many messages as the Go async runs (10e, 10m).
        Variant("tp2.confluent.chan", "throughput",
                [gob, "-client", "confluent", "-mode", "chan", "-variant", "chan", *gconn, "-messages",
                 str(p["go_async_messages"]), "-threads", "4", "-producers", "2", *sets("-set", BASE)], True),
        Variant("tp2.franz", "throughput",
                [gob, "-client", "franz", *gconn, "-messages", n, "-threads", "4", "-producers", "2",
                 *FRANZ_SAME], True),
        tp_go("send", n),
        tp_go("async", p["go_async_messages"]),
        tp_go("tagged", n),
        tp_go("tagged", n, 100),
        tp_go("poolsend", n),
        tp_go("pooltagged", n),
        tp_go("poolasync", p["go_async_messages"]),
    ])
    groups.append([
        Variant("tp4.wdpool.with1", "throughput", tp_wd(4, 1, BASE), True),
        Variant("tp4.wdpool.with100", "throughput", tp_wd(4, 100, BASE), True),
        Variant("tp4.raw", "throughput", tp_raw(4, BASE), True),
    ])
    groups.append([
        Variant("best.wdpool", "throughput", tp_wd(2, 100, BEST, many=True), True),
        Variant("best.raw", "throughput", tp_raw(2, BEST), True),
        Variant("best.franz", "throughput",
                [gob, "-client", "franz", "-variant", "best", *gconn, "-messages", n, "-threads", "4",
                 "-producers", "2", *FRANZ_BEST], True),
    ])
    for k in (1, 2, 4):
        common = [*conn, "--threads", "4", "--seconds", str(p["txn_seconds"]), "--per-txn", "10",
                  *sets("--set", BASE)]
        groups.append([
            Variant(f"txn{k}.wdpool", "txn", [wd, "txn", "--pool", str(k), *common]),
            Variant(f"txn{k}.raw", "txn", [raw, "txn", "--producers", str(k), *common]),
        ])
    lat = [*conn, "--messages", str(p["lat_messages"]), "--warmup", str(p["lat_warmup"]),
           *sets("--set", LATENCY)]
    # Latency swings between runs (where the scheduler puts the waiting
    # thread and librdkafka's): the pair runs lat_repeat times per round.
    for _ in range(p["lat_repeat"]):
        groups.append([
            Variant("lat.wdpool", "latency", [wd, "latency", *lat], True),
            Variant("lat.raw", "latency", [raw, "latency", *lat], True),
        ])
    for t, ops in ((1, p["with_ops"]), (2, p["with_ops_2t"])):
        groups.append([
            Variant(f"with{t}.wdpool.with", "with", [wd, "with", "--threads", str(t), "--ops", str(ops), "--mode", "with"]),
            Variant(f"with{t}.wdpool.checkout", "with",
                    [wd, "with", "--threads", str(t), "--ops", str(ops), "--mode", "checkout"]),
            # With an owner token per thread: what the Go and Ruby bindings
            # pay in the library for each With (row 6e).
            *([Variant(f"with{t}.wdpool.owner", "with",
                       [wd, "with", "--threads", str(t), "--ops", str(ops), "--mode", "owner"])] if t == 1 else []),
            Variant(f"with{t}.c_pool", "with", [cpool, "--threads", str(t), "--ops", str(ops)]),
        ])
    # The bindings' empty `with` against the pool a Ruby or Go user would
    # take instead, on a pool of 2: 1 thread, and 4 threads sharing it.
    for t in (1, 4):
        rb = [a.ruby, a.ruby_with, "--threads", str(t), "--pool", "2", "--ops", str(p["rb_ops"])]
        groups.append([
            # `with`'s C quick path (the default), and the pure-Ruby path
            # (WDPOOL_RUBY_PURE=1, what runs without the C extension).
            Variant(f"rbwith{t}.wdpool", "with", [*rb, "--impl", "wdpool", "--expect-fast", "1"], env=ruby_env,
                    lib=rel),
            Variant(f"rbwith{t}.wdpool_pure", "with", [*rb, "--impl", "wdpool", "--expect-fast", "0"],
                    env={**ruby_env, "WDPOOL_RUBY_PURE": "1"}, lib=rel),
            Variant(f"rbwith{t}.connection_pool", "with", [*rb, "--impl", "connection_pool"], env=ruby_env),
        ])
    for t in (1, 4):
        gw = [gob, "-bench", "with", "-threads", str(t), "-pool", "2", "-ops", str(p["go_with_ops"])]
        groups.append([
            Variant(f"gowith{t}.wdpool", "with", [*gw, "-client", "wdpool"], lib=rel),
            Variant(f"gowith{t}.chan", "with", [*gw, "-client", "chan"]),
        ])
    for m in (0, 1000):
        common = [*conn, "--inflight", str(m), "--repeat", str(p["close_repeat"]), *sets("--set", BASE)]
        groups.append([
            Variant(f"close{m}.wdpool", "close", [wd, "close", "--pool", "2", *common], True),
            Variant(f"close{m}.raw", "close", [raw, "close", "--producers", "2", *common], True),
        ])
    return groups


# ------------------------------------------------------------------ running

def parse_result(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    if not lines:
        return None
    out = {}
    for tok in lines[-1].split()[1:]:
        k, _, v = tok.partition("=")
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def high_watermarks(a):
    r = subprocess.run([a.raw, "offsets", "--bootstrap", a.bootstrap, "--topic", a.topic],
                       capture_output=True, text=True, timeout=60)
    res = parse_result(r.stdout)
    if r.returncode != 0 or not res:
        raise RuntimeError(f"reading the high watermarks failed: {r.stderr.strip()}")
    return res["high_sum"]


def warm_up(a, p):
    """One throughput run of raw rdkafka, not recorded, before the first
    round: a broker just started runs the first minutes of load slower (the
    JVM compiles its hot paths), which made the first variant of round 1
    (always row 1a's) pay for it: 693k msgs/s against 845k and 1.01M in
    the two rounds after it, in one run; 928k against 1.90M in another."""
    n = min(p["messages"], 1_000_000)
    argv = [a.raw, "throughput", "--bootstrap", a.bootstrap, "--topic", a.topic, "--messages", str(n),
            "--threads", "4", "--producers", "2", *sets("--set", BASE)]
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=p["timeout"])
        ok = r.returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        ok = False
    print(f"# broker warm-up: raw rdkafka, {n:,} messages, not recorded "
          f"[{time.monotonic() - t0:.1f} s{'' if ok else ', FAILED (the runs go on)'}]", flush=True)


def run_variant(a, p, v, rnd):
    argv = list(v.argv)
    if v.kind == "txn":  # transactional ids unique to this run
        argv += ["--txn-prefix", f"bench-{os.getpid()}-{rnd}-{v.key}"]
    rec = {"key": v.key, "round": rnd, "kind": v.kind, "argv": argv, "load1": round(os.getloadavg()[0], 2)}
    if v.lib:
        rec["expect_lib"] = v.lib
    try:
        before = high_watermarks(a) if v.watermarks else None
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=p["timeout"], env={**os.environ, **v.env})
        rec["wall_s"] = round(time.monotonic() - t0, 3)
        res = parse_result(r.stdout)
        if r.returncode != 0 or res is None:
            tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
            rec["error"] = f"exit {r.returncode}: " + " | ".join(tail)
            if res:
                rec.update(res)
            return rec
        rec.update(res)
        if v.watermarks:
            rec["broker_delta"] = high_watermarks(a) - before
    except (subprocess.TimeoutExpired, RuntimeError, OSError) as e:
        rec["error"] = str(e)
        return rec
    derive(rec)
    return rec


def derive(rec):
    """Metrics from a run's raw numbers; delivered counts what the broker
    stored, minus the warm-up messages."""
    kind = rec["kind"]
    if kind == "throughput":
        rec["delivered_broker"] = rec["broker_delta"] - rec["warmup"]
        delivered = rec["delivered_broker"]
        if rec.get("delivered", -1) >= 0:
            delivered = min(delivered, rec["delivered"])
        rec["msgs_per_s"] = delivered / rec["elapsed_s"] if rec["elapsed_s"] > 0 else 0.0
        rec["cpu_s_per_1m"] = rec["cpu_s"] / (delivered / 1e6) if delivered > 0 else float("nan")
    elif kind == "txn":
        rec["txns_per_s"] = rec["txns"] / rec["elapsed_s"] if rec["elapsed_s"] > 0 else 0.0
    elif kind in ("latency", "close"):
        rec["delivered_broker"] = rec["broker_delta"] - rec["warmup"]


def check(rec):
    """Did the run do everything it was asked? Returns the problems."""
    if "error" in rec:
        return [rec["error"]]
    kind, bad = rec["kind"], []
    if "expect_lib" in rec and os.path.realpath(str(rec.get("lib"))) != os.path.realpath(rec["expect_lib"]):
        bad.append(f"loaded libwdpool {rec.get('lib')}, not {rec['expect_lib']}")
    if kind == "throughput":
        if rec["delivered_broker"] != rec["sent"]:
            bad.append(f"broker stored {rec['delivered_broker']} of {rec['sent']} messages")
        if rec.get("delivered", -1) >= 0 and rec["delivered"] != rec["sent"]:
            bad.append(f"{rec['delivered']} of {rec['sent']} delivery reports were successes")
    elif kind == "txn":
        if rec.get("txns", 0) < 1:
            bad.append("no transaction committed")
        if rec.get("failed", 1) != 0:
            bad.append(f"{rec.get('failed')} transactions failed")
    elif kind == "latency":
        if rec["delivered_broker"] != rec["sent"] or rec["delivered"] != rec["sent"]:
            bad.append(f"delivered {rec['delivered']} (broker {rec['delivered_broker']}) of {rec['sent']}")
    elif kind == "with":
        if not rec.get("ops") or not rec.get("ns_per_op", rec.get("wall_ns_per_op", 0)) > 0:
            bad.append("no operation timed")
    elif kind == "close":
        if rec.get("undelivered") != 0:
            bad.append(f"{rec.get('undelivered')} messages undelivered at close")
        if rec["delivered_broker"] != rec["sent"]:
            bad.append(f"broker stored {rec['delivered_broker']} of {rec['sent']} messages")
    return bad


# -------------------------------------------------------------------- table

def fmt_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.0f}k"
    return f"{x:.1f}"


FORMATS = {
    "msgs_per_s": ("msgs/s", fmt_rate),
    "cpu_s_per_1m": ("CPU s / 1M msgs", lambda x: f"{x:.2f}"),
    "txns_per_s": ("txns/s", lambda x: f"{x:.1f}"),
    "p50_us": ("µs", lambda x: f"{x:.0f}"),
    "p99_us": ("µs", lambda x: f"{x:.0f}"),
    "ns_per_op": ("ns/op", lambda x: f"{x:.0f}"),
    "wall_ns_per_op": ("ns/op (wall)", lambda x: f"{x:.0f}"),
    "close_ms": ("ms", lambda x: f"{x:.1f}"),
    "flush_ms": ("ms", lambda x: f"{x:.1f}"),
}

# id, measure, wdpool variant, baseline variant, baseline metric (None: the
# same), metric, goal (op, ratio) or None, baseline label.
ROWS = [
    ("1a", "produce_async, pool 2, 4 threads, `with` per message", "tp2.wdpool.with1", "tp2.raw", None,
     "msgs_per_s", (">=", 0.95), "raw ThreadedProducer ×2"),
    ("1b", "produce_async, pool 2, 4 threads, `with` per 100 messages", "tp2.wdpool.with100", "tp2.raw", None,
     "msgs_per_s", (">=", 0.95), "raw ThreadedProducer ×2"),
    ("2a", "produce_async, pool 4, 4 threads, `with` per message", "tp4.wdpool.with1", "tp4.raw", None,
     "msgs_per_s", (">=", 0.95), "raw ThreadedProducer ×4"),
    ("2b", "produce_async, pool 4, 4 threads, `with` per 100 messages", "tp4.wdpool.with100", "tp4.raw", None,
     "msgs_per_s", (">=", 0.95), "raw ThreadedProducer ×4"),
    ("3a", "CPU per message, row 1a", "tp2.wdpool.with1", "tp2.raw", None, "cpu_s_per_1m", ("<=", 1.1),
     "raw, row 1"),
    ("3b", "CPU per message, row 1b", "tp2.wdpool.with100", "tp2.raw", None, "cpu_s_per_1m", ("<=", 1.1),
     "raw, row 1"),
    ("3c", "CPU per message, row 2a", "tp4.wdpool.with1", "tp4.raw", None, "cpu_s_per_1m", ("<=", 1.1),
     "raw, row 2"),
    ("3d", "CPU per message, row 2b", "tp4.wdpool.with100", "tp4.raw", None, "cpu_s_per_1m", ("<=", 1.1),
     "raw, row 2"),
    ("4a", "transactions of 10 messages, pool 1, 4 threads", "txn1.wdpool", "txn1.raw", None, "txns_per_s",
     (">=", 0.9), "rd_kafka_commit_transaction ×1"),
    ("4b", "transactions of 10 messages, pool 2, 4 threads", "txn2.wdpool", "txn2.raw", None, "txns_per_s",
     (">=", 0.9), "rd_kafka_commit_transaction ×2"),
    ("4c", "transactions of 10 messages, pool 4, 4 threads", "txn4.wdpool", "txn4.raw", None, "txns_per_s",
     (">=", 0.9), "rd_kafka_commit_transaction ×4"),
    ("5a", "produce_sync p50, linger.ms=0, 1 thread", "lat.wdpool", "lat.raw", None, "p50_us", ("<=", 1.05),
     "raw send + wait"),
    ("5b", "produce_sync p99, linger.ms=0, 1 thread", "lat.wdpool", "lat.raw", None, "p99_us", ("<=", 1.05),
     "raw send + wait"),
    ("6a", "empty `with`, 1 thread", "with1.wdpool.with", "with1.c_pool", None, "ns_per_op", ("<=", 2.0),
     "C mutex+condvar pool"),
    ("6b", "empty checkout + checkin, 1 thread", "with1.wdpool.checkout", "with1.c_pool", None, "ns_per_op",
     ("<=", 2.0), "C mutex+condvar pool"),
    ("6c", "empty `with`, 2 threads, 2 producers", "with2.wdpool.with", "with2.c_pool", None, "ns_per_op",
     ("<=", 1.5), "C mutex+condvar pool"),
    ("6d", "empty checkout + checkin, 2 threads, 2 producers", "with2.wdpool.checkout", "with2.c_pool", None,
     "ns_per_op", ("<=", 1.5), "C mutex+condvar pool"),
    ("6e", "empty checkout + checkin with an owner token (as Go and Ruby do), 1 thread", "with1.wdpool.owner",
     "with1.c_pool", None, "ns_per_op", None, "C mutex+condvar pool"),
    ("7a", "graceful close, idle pool of 2", "close0.wdpool", "close0.raw", "flush_ms", "close_ms",
     ("+ms", 50), "rd_kafka_flush (raw close incl. drop: {close})"),
    ("7b", "graceful close, pool of 2, 1,000 messages in flight", "close1000.wdpool", "close1000.raw",
     "flush_ms", "close_ms", ("+ms", 50), "rd_kafka_flush (raw close incl. drop: {close})"),
    ("8a", "row 1a vs confluent-kafka-go v2.11.1 (idempotent)", "tp2.wdpool.with1", "tp2.confluent", None,
     "msgs_per_s", None, "confluent-kafka-go ×2"),
    ("8b", "row 1a vs franz-go v1.22.3 (idempotent)", "tp2.wdpool.with1", "tp2.franz", None, "msgs_per_s", None,
     "franz-go ×2"),
    ("8c", "best settings (below), pool 2, produce_many_async of 100 per `with`", "best.wdpool", "best.franz", None, "msgs_per_s",
     (">=", 1.0), "franz-go ×2, best settings"),
    ("9a", "Ruby: empty `with`, 1 thread, pool 2", "rbwith1.wdpool", "rbwith1.connection_pool", None,
     "wall_ns_per_op", ("<=", 0.25), "connection_pool gem `with`"),
    ("9b", "Ruby: empty `with`, 4 threads, pool 2", "rbwith4.wdpool", "rbwith4.connection_pool", None,
     "wall_ns_per_op", ("<=", 0.25), "connection_pool gem `with`"),
    ("9c", "Ruby without the C extension (pure ffi): empty `with`, 1 thread", "rbwith1.wdpool_pure",
     "rbwith1.connection_pool", None, "wall_ns_per_op", None, "connection_pool gem `with`"),
    ("9d", "Ruby without the C extension (pure ffi): empty `with`, 4 threads", "rbwith4.wdpool_pure",
     "rbwith4.connection_pool", None, "wall_ns_per_op", None, "connection_pool gem `with`"),
    ("10a", "Go: empty `With`, 1 goroutine, pool 2", "gowith1.wdpool", "gowith1.chan", None, "wall_ns_per_op",
     ("+ns", 300), "buffered-channel pool"),
    ("10b", "Go: empty `With`, 4 goroutines, pool 2", "gowith4.wdpool", "gowith4.chan", None, "wall_ns_per_op",
     ("+ns", 300), "buffered-channel pool"),
    ("10c", "Go: `With` + `Send` per message, pool 2, 4 goroutines", "tp2.go.send", "tp2.confluent", None,
     "msgs_per_s", (">=", 1.0), "confluent-kafka-go ×2"),
    ("10d", "Go: `With` + `Send` per message, pool 2, 4 goroutines", "tp2.go.send", "tp2.franz", None,
     "msgs_per_s", (">=", 1.0), "franz-go ×2"),
    ("10e", "Go: `With` + `ProduceAsync` per message, reports waited (fewer messages)", "tp2.go.async",
     "tp2.confluent.chan", None, "msgs_per_s", (">=", 1.0),
     "confluent-kafka-go ×2, a delivery channel per message, waited (as many messages)"),
    ("10f", "Go: `With` + `ProduceAsync` per message, reports waited (fewer messages)", "tp2.go.async", "tp2.franz", None,
     "msgs_per_s", (">=", 1.0), "franz-go ×2"),
    ("10g", "Go: `With` + `ProduceTagged` per message, reports taken from a `ReportQueue`", "tp2.go.tagged",
     "tp2.confluent", None, "msgs_per_s", (">=", 1.0), "confluent-kafka-go ×2"),
    ("10h", "Go: `With` + `ProduceTagged` per message, reports taken from a `ReportQueue`", "tp2.go.tagged",
     "tp2.franz", None, "msgs_per_s", (">=", 1.0), "franz-go ×2"),
    ("10i", "Go: `With` per 100 messages, `ProduceTagged`, reports taken from a `ReportQueue`", "tp2.go.tagged100",
     "tp2.confluent", None, "msgs_per_s", (">=", 1.0), "confluent-kafka-go ×2"),
    ("10j", "Go: `With` per 100 messages, `ProduceTagged`, reports taken from a `ReportQueue`", "tp2.go.tagged100",
     "tp2.franz", None, "msgs_per_s", (">=", 1.0), "franz-go ×2"),
    ("10k", "Go: `Pool.Send` per message (checkout, send, checkin: one cgo call)", "tp2.go.poolsend",
     "tp2.confluent", None, "msgs_per_s", (">=", 1.0), "confluent-kafka-go ×2"),
    ("10l", "Go: `Pool.ProduceTagged` per message, reports taken from a `ReportQueue`", "tp2.go.pooltagged",
     "tp2.confluent", None, "msgs_per_s", (">=", 1.0), "confluent-kafka-go ×2"),
    ("10m", "Go: `Pool.ProduceAsync` per message, reports waited (fewer messages)", "tp2.go.poolasync",
     "tp2.confluent.chan", None, "msgs_per_s", (">=", 1.0),
     "confluent-kafka-go ×2, a delivery channel per message, waited (as many messages)"),
]


def values(results, key, metric):
    return [r[metric] for r in results if r["key"] == key and "error" not in r and metric in r]


def med(xs):
    return statistics.median(xs) if xs else None


def spread(xs):
    """(max - min) / median, in percent; '-' for fewer than 2 values."""
    if len(xs) < 2 or not med(xs):
        return "-"
    return f"{(max(xs) - min(xs)) / med(xs) * 100:.0f}%"


def paired(results, wkey, bkey, metric, bmetric, diff=False):
    """wdpool / baseline (or wdpool - baseline) for each slot where both ran:
    the runs of one group instance share the machine's state of the moment."""
    base = {r["slot"]: r[bmetric] for r in results
            if r["key"] == bkey and "error" not in r and bmetric in r and "slot" in r}
    out = []
    for r in results:
        if r["key"] == wkey and "error" not in r and metric in r and r.get("slot") in base:
            b = base[r["slot"]]
            if diff:
                out.append(r[metric] - b)
            elif b:
                out.append(r[metric] / b)
    return out


def table(results):
    head = ("| # | measure | unit | wdpool | spread | baseline | baseline value | spread | wdpool / baseline "
            "| ratio range | goal | holds |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    verdicts = []
    for rid, name, wkey, bkey, bmetric, metric, goal, blabel in ROWS:
        unit, fmt = FORMATS[metric]
        wv = values(results, wkey, metric)
        bv = values(results, bkey, bmetric or metric)
        wm, bm = med(wv), med(bv)
        if "{close}" in blabel:
            cm = med(values(results, bkey, "close_ms"))
            blabel = blabel.format(close=(fmt(cm) + " ms") if cm is not None else "?")
        # A ratio to a flush of ~0 ms says nothing: the close rows show the
        # difference; so do the Go `With` rows, whose goal is one.
        diff = bool(goal) and goal[0].startswith("+")
        dunit = goal[0][1:] if diff else ""
        pairs = paired(results, wkey, bkey, metric, bmetric or metric, diff)
        ratio = med(pairs)
        if ratio is None:
            ratio_s, range_s = "n/a", "-"
        elif diff:
            ratio_s = f"{ratio:+.1f} {dunit}" if dunit == "ms" else f"{ratio:+.0f} {dunit}"
            range_s = f"{min(pairs):+.0f}…{max(pairs):+.0f}" if len(pairs) > 1 else "-"
        else:
            ratio_s = f"{ratio:.2f}"
            range_s = f"{min(pairs):.2f}–{max(pairs):.2f}" if len(pairs) > 1 else "-"
        goal_s, holds = "-", "-"
        if goal and ratio is not None:
            op, g = goal
            if op == ">=":
                goal_s, ok = f"≥ {g}×", ratio >= g
            elif op == "<=":
                goal_s, ok = f"≤ {g}×", ratio <= g
            else:
                goal_s, ok = f"≤ baseline + {g} {dunit}", ratio <= g
            holds = "yes" if ok else "**no**"
            verdicts.append((rid, ok))
        lines.append(
            f"| {rid} | {name} | {unit} | {fmt(wm) if wm is not None else 'n/a'} | {spread(wv)} | {blabel} | "
            f"{fmt(bm) if bm is not None else 'n/a'} | {spread(bv)} | {ratio_s} | {range_s} | {goal_s} | {holds} |")
    return "\n".join(lines), verdicts


def notes(results):
    """Lines under the table: scaling, peers against raw, CPU of the peers."""
    out = []
    for impl in ("wdpool", "raw"):
        v = [med(values(results, f"txn{k}.{impl}", "txns_per_s")) for k in (1, 2, 4)]
        if all(v) and v[0]:
            out.append(f"- Transactions scale with the pool size ({impl}): pool 2 = {v[1] / v[0]:.2f}× pool 1, "
                       f"pool 4 = {v[2] / v[0]:.2f}× pool 1 (linear: 2× and 4×).")
    for key, label, ref, ref_label in (
            ("tp2.confluent", "confluent-kafka-go", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.confluent.chan", "confluent-kafka-go, a delivery channel per message (fewer messages)",
             "tp2.confluent", "confluent-kafka-go with its Events channel"),
            ("tp2.franz", "franz-go", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.wdpool.with1", "wdpool, `with` per message", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.go.send", "wdpool's Go binding, `With` + `Send`", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.go.async", "wdpool's Go binding, `With` + `ProduceAsync`", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.go.tagged", "wdpool's Go binding, `With` + `ProduceTagged`", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.go.tagged100", "wdpool's Go binding, `With` per 100 + `ProduceTagged`", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.go.poolsend", "wdpool's Go binding, `Pool.Send`", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.go.pooltagged", "wdpool's Go binding, `Pool.ProduceTagged`", "tp2.raw", "raw rdkafka (row 1)"),
            ("tp2.go.poolasync", "wdpool's Go binding, `Pool.ProduceAsync`", "tp2.raw", "raw rdkafka (row 1)"),
            ("best.raw", "raw rdkafka, best settings", None, None),
            ("best.wdpool", "wdpool, best settings", "best.raw", "raw rdkafka with the same settings"),
            ("best.franz", "franz-go, best settings", "best.raw", "raw rdkafka with wdpool's best settings")):
        m, c = med(values(results, key, "msgs_per_s")), med(values(results, key, "cpu_s_per_1m"))
        if m is None:
            continue
        line = f"- {label}: {fmt_rate(m)} msgs/s, {c:.2f} CPU s / 1M msgs"
        r = med(paired(results, key, ref, "msgs_per_s", "msgs_per_s")) if ref else None
        if r is not None:
            line += f"; {r:.2f}× {ref_label}, paired by round"
        out.append(line + ".")
    loads = [r["load1"] for r in results if "load1" in r]
    if loads:
        out.append(f"- Load average (1 min) when the runs started: {min(loads):.1f} to {max(loads):.1f}, median "
                   f"{med(loads):.1f}, on {os.cpu_count()} CPUs (the machine is shared: other work adds noise).")
    w = med(values(results, "with1.wdpool.with", "ns_per_op"))
    if w is not None:
        out.append(f"- Empty `with`, 1 thread: wdpool {w:.0f} ns (issue's absolute goal: ≤ 50 ns).")
    return out


# --------------------------------------------------------------------- main

def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        mem_kb = 0
    return f"{os.cpu_count()} CPUs ({model}), {mem_kb / 1024 / 1024:.1f} GiB RAM, Linux {platform.release()}"


def git_commit():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "third_party"], capture_output=True,
                               text=True).stdout.strip()
        return rev + (" (src/ or third_party/ modified)" if dirty else "")
    except OSError:
        return "?"


def main():
    # TERM (bench/run.sh stopping) unwinds like Ctrl-C: subprocess.run kills
    # the program it waits for, and the broker is never left to a stray one.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=PROFILES, default="quick")
    ap.add_argument("--bootstrap", help="the broker (required unless --report)")
    ap.add_argument("--report", metavar="JSONL", help="print the table of runs recorded with --out; run nothing")
    ap.add_argument("--topic", default="bench")
    ap.add_argument("--bin", default="target/bench", help="where wdpool_bench, c_pool and gobench are")
    ap.add_argument("--raw", default="target/release/wdpool-bench-raw")
    ap.add_argument("--release-lib", default="target/release/libwdpool.so",
                    help="the library the Ruby and Go rows must load")
    ap.add_argument("--ruby", default="ruby")
    ap.add_argument("--ruby-with", default="bindings/ruby/bench/with.rb")
    ap.add_argument("--rounds", type=int, help="override the profile's rounds")
    ap.add_argument("--only", help="run only the groups whose first key starts with one of these (comma list)")
    ap.add_argument("--broker-version", default="?")
    ap.add_argument("--out", help="write every run as JSON lines here")
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            results = [json.loads(line) for line in f if line.strip()]
        print_table(results)
        return 0
    if not a.bootstrap:
        ap.error("--bootstrap is required")
    p = dict(PROFILES[a.profile])
    if a.rounds:
        p["rounds"] = a.rounds
    a.wdpool_bench = os.path.join(a.bin, "wdpool_bench")
    a.c_pool = os.path.join(a.bin, "c_pool")
    a.gobench = os.path.join(a.bin, "gobench")
    a.release_lib = os.path.abspath(a.release_lib)
    a.ruby_with = os.path.abspath(a.ruby_with)
    groups = variants(a, p)
    if a.only:
        prefixes = tuple(a.only.split(","))
        groups = [g for g in groups if g[0].key.startswith(prefixes)]

    started = time.monotonic()
    print(f"# wdpool bench, profile {a.profile}: {p['rounds']} round(s), {p['messages']:,} messages per "
          f"throughput run, interleaved", flush=True)
    print(f"# machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    print(f"# broker: Apache Kafka {a.broker_version}, 1 node on 127.0.0.1 ({a.bootstrap}), topic {a.topic} "
          f"(6 partitions); wdpool commit {git_commit()}", flush=True)
    out = open(a.out, "w") if a.out else None
    warm_up(a, p)
    results = []
    for rnd in range(p["rounds"]):
        for gi, g in enumerate(groups):
            first = (rnd + gi) % len(g)  # rotates from round to round (and between repeated groups)
            order = g[first:] + g[:first]
            for v in order:
                rec = run_variant(a, p, v, rnd)
                rec["slot"] = f"{rnd}.{gi}"  # the group instance: ratios pair runs of one slot
                rec["problems"] = check(rec)
                results.append(rec)
                if out:
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                status = "FAILED: " + "; ".join(rec["problems"]) if rec["problems"] else "ok"
                shown = {k: rec[k] for k in ("msgs_per_s", "cpu_s_per_1m", "txns_per_s", "p50_us", "p99_us",
                                             "ns_per_op", "wall_ns_per_op", "close_ms", "flush_ms") if k in rec}
                summary = " ".join(f"{k}={x:.6g}" if isinstance(x, float) else f"{k}={x}" for k, x in shown.items())
                print(f"round {rnd + 1}/{p['rounds']} {v.key:<24} {summary} [{rec.get('wall_s', '?')} s, "
                      f"load {rec['load1']:.1f}] {status}", flush=True)
    if out:
        out.close()

    failed = [r for r in results if r["problems"]]
    elapsed = time.monotonic() - started
    if a.profile == "smoke":
        keys = {v.key for g in groups for v in g}
        ran = {r["key"] for r in results if not r["problems"]}
        for k in sorted(keys - ran):
            print(f"bench-smoke: FAILED {k}: " + "; ".join(
                pr for r in results if r["key"] == k for pr in r["problems"]))
        passed = len(results) - len(failed)
        print(f"bench-smoke: {passed} passed, {len(failed)} failed ({elapsed:.0f} s)")
        return 1 if failed else 0

    verdicts = print_table(results)
    held = sum(ok for _, ok in verdicts)
    print()
    print(f"goals: {held} of {len(verdicts)} rows hold; runs: {len(results)}, failed: {len(failed)}; "
          f"load average at end {os.getloadavg()[0]:.2f}; driver time {elapsed:.0f} s")
    for r in failed:
        print(f"FAILED run {r['key']} round {r['round'] + 1}: " + "; ".join(r["problems"]))
    return 1 if failed else 0


def print_table(results):
    text, verdicts = table(results)
    print()
    print(text)
    print()
    for line in notes(results):
        print(line)
    print()
    print("Settings (every client within a row gets the same):")
    print(f"- rows 1-4, 7, 8a-b (librdkafka): {' '.join(BASE)}; franz-go: {' '.join(FRANZ_SAME)} "
          f"(idempotent and acks=all always)")
    print(f"- row 5: {' '.join(LATENCY)}")
    print(f"- row 8c wdpool and raw (librdkafka): {' '.join(BEST)}; franz-go: {' '.join(FRANZ_BEST)}")
    print("- confluent-kafka-go also gets go.delivery.report.fields=none (reports carry no key/value copy)")
    sent = sorted({r["sent"] for r in results if r["key"] == "tp2.go.async" and "sent" in r})
    print("- rows 10c-m: wdpool's Go binding gets the librdkafka settings of row 1 (release library); 10e-f and 10m "
          "(and their confluent-kafka-go baseline with a delivery channel per message) send "
          f"{' / '.join(f'{x:,}' for x in sent) or '?'} messages per run; rows 9 and 10a-b: deliver=false producers, "
          "ns/op (wall) = wall time / operations of all threads together")
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
