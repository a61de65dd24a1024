// Command gobench: the Go peers of `make bench` and wdpool's Go binding on
// the throughput workload of row 1 (4 goroutines sharing 2 producers,
// 100-byte messages, drained to the end), and the empty With of the Go
// binding against a buffered-channel pool (wdpool.go).
//
//	gobench -client confluent [-mode send|chan] [-window 10000] -bootstrap B -topic T -messages N -threads 4 -producers 2
//	        [-set key=value]...
//	gobench -client franz     -bootstrap B -topic T -messages N -threads 4 -producers 2
//	        [-linger 5ms] [-compression none|snappy|lz4|zstd] [-max-buffered 100000]
//	        [-batch-max-bytes 1000012]
//	gobench -client wdpool -mode send|async|tagged|poolsend|pooltagged [-window 10000] [-per-with 1] -bootstrap B -topic T -messages N
//	        -threads 4 -producers 2 [-set key=value]...
//	gobench -bench with -client wdpool|chan -threads T -pool 2 -ops N
//
// confluent-kafka-go (cgo, its bundled librdkafka) and wdpool take
// librdkafka properties with -set, as the raw baseline does. franz-go (pure
// Go) is idempotent by default and always waits for all in-sync replicas
// here; its settings are flags. Prints one line "RESULT key=value ...".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"
)

type sets []string

func (s *sets) String() string     { return strings.Join(*s, ",") }
func (s *sets) Set(v string) error { *s = append(*s, v); return nil }

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "gobench: "+format+"\n", args...)
	os.Exit(2)
}

// payload: byte i is 'a' + (7 i mod 26), as in every program of bench/.
func payload() []byte {
	p := make([]byte, 100)
	for i := range p {
		p[i] = byte('a' + (7*i)%26)
	}
	return p
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		die("getrusage: %v", err)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

type counts struct {
	delivered, failed atomic.Int64
	firstErr          atomic.Value
}

func (c *counts) report(err error) {
	if err == nil {
		c.delivered.Add(1)
		return
	}
	c.firstErr.CompareAndSwap(nil, err.Error())
	c.failed.Add(1)
}

func (c *counts) done() int64 { return c.delivered.Load() + c.failed.Load() }

func (c *counts) waitFor(n int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for c.done() < n {
		if time.Now().After(deadline) {
			die("%d of %d delivery reports after %v", c.done(), n, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

type config struct {
	bootstrap, topic           string
	messages                   int64
	threads, producers         int
	sets                       sets
	linger                     time.Duration
	compression                string
	maxBuffered, batchMaxBytes int
}

// share splits n messages over the goroutines.
func share(n int64, threads, t int) int64 {
	s := n / int64(threads)
	if int64(t) < n%int64(threads) {
		s++
	}
	return s
}

type result struct {
	warmup         int64
	elapsed, sendS float64
	cpu            float64
	queueFull      int64
	noReports      bool // fire-and-forget: no delivery report counted
}

// --------------------------------------------------------------- confluent

// runConfluent: every report through the producers' Events channels (mode
// "events", what confluent-kafka-go's own examples do), or, mode "chan", a
// delivery channel per message, waited in order once window are pending
// per goroutine: what a confluent-kafka-go user writes to know each
// message's fate, as wdpool's ProduceAsync + Wait does (rows 10e, 10m).
func runConfluent(cfg config, c *counts, mode string, window int) result {
	conf := kafka.ConfigMap{"bootstrap.servers": cfg.bootstrap, "go.delivery.report.fields": "none"}
	for _, kv := range cfg.sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			die("-set %s: not key=value", kv)
		}
		conf[k] = v
	}
	producers := make([]*kafka.Producer, cfg.producers)
	var events sync.WaitGroup
	for i := range producers {
		p, err := kafka.NewProducer(&conf)
		if err != nil {
			die("confluent NewProducer: %v", err)
		}
		producers[i] = p
		events.Add(1)
		go func() {
			defer events.Done()
			for e := range p.Events() {
				if m, ok := e.(*kafka.Message); ok {
					c.report(m.TopicPartition.Error)
				}
			}
		}()
	}
	body := payload()
	topic := cfg.topic
	produce := func(p *kafka.Producer, ch chan kafka.Event) int64 {
		full := int64(0)
		for {
			err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Value: body}, ch)
			if err == nil {
				return full
			}
			if ke, ok := err.(kafka.Error); ok && ke.Code() == kafka.ErrQueueFull {
				full++
				time.Sleep(200 * time.Microsecond)
				continue
			}
			die("confluent Produce: %v", err)
		}
	}
	for _, p := range producers {
		produce(p, nil)
	}
	warmup := int64(len(producers))
	c.waitFor(warmup, time.Minute)

	var full atomic.Int64
	cpu0 := cpuSeconds()
	t0 := time.Now()
	var wg sync.WaitGroup
	for t := 0; t < cfg.threads; t++ {
		wg.Add(1)
		go func(p *kafka.Producer, n int64) {
			defer wg.Done()
			f := int64(0)
			if mode != "chan" {
				for i := int64(0); i < n; i++ {
					f += produce(p, nil)
				}
				full.Add(f)
				return
			}
			var pending []chan kafka.Event
			wait := func() {
				m, ok := (<-pending[0]).(*kafka.Message)
				if !ok {
					die("confluent: a delivery channel got no message")
				}
				c.report(m.TopicPartition.Error)
				pending = pending[1:]
			}
			for i := int64(0); i < n; i++ {
				ch := make(chan kafka.Event, 1)
				f += produce(p, ch)
				pending = append(pending, ch)
				for len(pending) >= window {
					wait()
				}
			}
			for len(pending) > 0 {
				wait()
			}
			full.Add(f)
		}(producers[t%len(producers)], share(cfg.messages, cfg.threads, t))
	}
	wg.Wait()
	sendS := time.Since(t0).Seconds()
	c.waitFor(warmup+cfg.messages, 10*time.Minute)
	elapsed := time.Since(t0).Seconds()
	cpu := cpuSeconds() - cpu0
	for _, p := range producers {
		p.Close()
	}
	events.Wait()
	return result{warmup: warmup, elapsed: elapsed, sendS: sendS, cpu: cpu, queueFull: full.Load()}
}

// ------------------------------------------------------------------- franz

func codec(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	case "gzip":
		return kgo.GzipCompression()
	}
	die("-compression %s: none|snappy|lz4|zstd|gzip", name)
	return kgo.NoCompression()
}

func runFranz(cfg config, c *counts) result {
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(cfg.bootstrap, ",")...),
		kgo.DefaultProduceTopic(cfg.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent (the default) needs it
		kgo.ProducerLinger(cfg.linger),
		kgo.ProducerBatchCompression(codec(cfg.compression)),
		kgo.MaxBufferedRecords(cfg.maxBuffered),
		kgo.ProducerBatchMaxBytes(int32(cfg.batchMaxBytes)),
	}
	clients := make([]*kgo.Client, cfg.producers)
	for i := range clients {
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			die("franz NewClient: %v", err)
		}
		clients[i] = cl
	}
	body := payload()
	ctx := context.Background()
	promise := func(_ *kgo.Record, err error) { c.report(err) }
	for _, cl := range clients {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: body}).FirstErr(); err != nil {
			die("franz warm-up: %v", err)
		}
		c.report(nil)
	}
	warmup := int64(len(clients))

	cpu0 := cpuSeconds()
	t0 := time.Now()
	var wg sync.WaitGroup
	for t := 0; t < cfg.threads; t++ {
		wg.Add(1)
		go func(cl *kgo.Client, n int64) {
			defer wg.Done()
			for i := int64(0); i < n; i++ {
				cl.Produce(ctx, &kgo.Record{Value: body}, promise)
			}
		}(clients[t%len(clients)], share(cfg.messages, cfg.threads, t))
	}
	wg.Wait()
	sendS := time.Since(t0).Seconds()
	for _, cl := range clients {
		if err := cl.Flush(ctx); err != nil {
			die("franz Flush: %v", err)
		}
	}
	c.waitFor(warmup+cfg.messages, 10*time.Minute)
	elapsed := time.Since(t0).Seconds()
	cpu := cpuSeconds() - cpu0
	for _, cl := range clients {
		cl.Close()
	}
	return result{warmup: warmup, elapsed: elapsed, sendS: sendS, cpu: cpu}
}

func main() {
	var cfg config
	client := flag.String("client", "", "confluent | franz | wdpool (-bench with: wdpool | chan)")
	bench := flag.String("bench", "throughput", "throughput | with")
	mode := flag.String("mode", "send", "confluent: send (reports through Events) | chan (a delivery channel per message, waited as -mode async waits); wdpool: send (fire and forget) | async (ProduceAsync, Deliveries waited) | tagged (ProduceTagged, reports taken from one ReportQueue) | poolsend, pooltagged, poolasync (send, tagged, async through Pool.Send, Pool.ProduceTagged, Pool.ProduceAsync)")
	window := flag.Int("window", 10000, "wdpool -mode async / confluent -mode chan: reports pending per goroutine")
	perWith := flag.Int("per-with", 1, "wdpool: messages per With")
	ops := flag.Int64("ops", 1000000, "-bench with: operations in all")
	size := flag.Int("pool", 2, "-bench with: pool size")
	variant := flag.String("variant", "default", "a label for the RESULT line")
	flag.StringVar(&cfg.bootstrap, "bootstrap", "", "bootstrap servers")
	flag.StringVar(&cfg.topic, "topic", "bench", "topic")
	flag.Int64Var(&cfg.messages, "messages", 100000, "messages in all")
	flag.IntVar(&cfg.threads, "threads", 4, "producing goroutines")
	flag.IntVar(&cfg.producers, "producers", 2, "producers (clients) shared by the goroutines")
	flag.DurationVar(&poolTimeout, "pool-timeout", time.Minute, "wdpool: the pool's checkout timeout")
	flag.Var(&cfg.sets, "set", "confluent: a librdkafka property key=value (repeatable)")
	flag.DurationVar(&cfg.linger, "linger", 5*time.Millisecond, "franz: ProducerLinger")
	flag.StringVar(&cfg.compression, "compression", "none", "franz: ProducerBatchCompression")
	flag.IntVar(&cfg.maxBuffered, "max-buffered", 100000, "franz: MaxBufferedRecords")
	flag.IntVar(&cfg.batchMaxBytes, "batch-max-bytes", 1000012, "franz: ProducerBatchMaxBytes")
	flag.Parse()
	if *bench == "with" {
		if cfg.threads < 1 || *size < 1 || *ops < 1 {
			die("-threads, -pool and -ops at least 1")
		}
		benchWith(*client, cfg.threads, *size, *ops)
		return
	}
	if *bench != "throughput" {
		die("-bench throughput|with")
	}
	if cfg.bootstrap == "" || cfg.threads < 1 || cfg.producers < 1 {
		die("-bootstrap is required; -threads and -producers at least 1")
	}
	var c counts
	var r result
	switch *client {
	case "confluent":
		if *mode != "send" && *mode != "chan" {
			die("confluent: -mode send (reports through Events) | chan (a delivery channel per message)")
		}
		if *window < 1 {
			die("-window at least 1")
		}
		r = runConfluent(cfg, &c, *mode, *window)
	case "franz":
		r = runFranz(cfg, &c)
	case "wdpool":
		if *window < 1 || *perWith < 1 {
			die("-window and -per-with at least 1")
		}
		r = runWdpool(cfg, &c, *mode, *window, *perWith)
	default:
		die("-client confluent|franz|wdpool")
	}
	if e := c.firstErr.Load(); e != nil {
		die("%d messages failed; first: %v", c.failed.Load(), e)
	}
	delivered, lib := c.delivered.Load()-r.warmup, "-"
	if r.noReports {
		delivered = -1
	}
	if *client == "wdpool" {
		lib = loadedLibrary()
	}
	fmt.Printf("RESULT bench=throughput impl=%s variant=%s producers=%d threads=%d sent=%d warmup=%d delivered=%d "+
		"queue_full=%d elapsed_s=%.6f send_s=%.6f cpu_s=%.6f lib=%s\n",
		*client, *variant, cfg.producers, cfg.threads, cfg.messages, r.warmup, delivered,
		r.queueFull, r.elapsed, r.sendS, r.cpu, lib)
}
