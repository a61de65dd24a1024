package wdpool

import (
	"context"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuPerOp reports the process's CPU time (user + system, every thread)
// per operation beside ns/op: on a shared machine it moves less than wall
// time. Use as defer cpuPerOp(b)() after the set-up.
func cpuPerOp(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	b.ResetTimer()
	return func() {
		b.StopTimer()
		b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op")
	}
}

// An empty With against a plain buffered-channel pool of the same size:
// what wdpool's checkout/checkin costs over the cheapest Go pool.

func BenchmarkWithEmpty(b *testing.B) {
	p := newOffline(b, 4, time.Second)
	ctx := context.Background()
	empty := func(*Producer) error { return nil }
	p.With(ctx, empty) // create the producer
	defer cpuPerOp(b)()
	for b.Loop() {
		if err := p.With(ctx, empty); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWithEmptyParallel(b *testing.B) {
	p := newOffline(b, 4, 10*time.Second)
	ctx := context.Background()
	empty := func(*Producer) error { return nil }
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.With(ctx, empty); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type chanPool struct{ ch chan *int }

func newChanPool(n int) *chanPool {
	c := &chanPool{ch: make(chan *int, n)}
	for i := 0; i < n; i++ {
		c.ch <- new(int)
	}
	return c
}

func (c *chanPool) with(fn func(*int) error) error {
	x := <-c.ch
	defer func() { c.ch <- x }()
	return fn(x)
}

func BenchmarkChannelPoolEmpty(b *testing.B) {
	c := newChanPool(4)
	empty := func(*int) error { return nil }
	defer cpuPerOp(b)()
	for b.Loop() {
		c.with(empty)
	}
}

func BenchmarkChannelPoolEmptyParallel(b *testing.B) {
	c := newChanPool(4)
	empty := func(*int) error { return nil }
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.with(empty)
		}
	})
}

var payload100 = make([]byte, 100)

// ProduceAsync (fire and forget: Send) of 100-byte messages.
func benchmarkSend(b *testing.B, configure ConfigureFunc) {
	p, err := New(&Options{Size: 2, Timeout: 10 * time.Second}, configure)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.SetBytes(100)
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		p.With(ctx, func(pr *Producer) error {
			for pb.Next() {
				if err := pr.Send(&Message{Topic: "bench", Payload: payload100}); err != nil {
					b.Fatal(err)
				}
			}
			return pr.Flush(ctx)
		})
	})
}

func BenchmarkSendOffline(b *testing.B) { benchmarkSend(b, offline) }

// A message per checkout, 1 goroutine, deliver=false producers: a With
// with Send inside (three cgo calls), against Pool.Send (one).
func BenchmarkWithSendPerMessageOffline(b *testing.B) {
	p := newOffline(b, 2, 10*time.Second)
	ctx := context.Background()
	m := &Message{Topic: "bench", Payload: payload100}
	defer cpuPerOp(b)()
	for b.Loop() {
		if err := p.With(ctx, func(pr *Producer) error { return pr.Send(m) }); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPoolSendOffline(b *testing.B) {
	p := newOffline(b, 2, 10*time.Second)
	ctx := context.Background()
	m := &Message{Topic: "bench", Payload: payload100}
	defer cpuPerOp(b)()
	for b.Loop() {
		if err := p.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendMockCluster(b *testing.B) {
	benchmarkSend(b, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": mock.BootstrapServers(), "linger.ms": "5"})
	})
}

// ProduceAsync with a Delivery per message, waited on at the end.
// mockLingerPool: a pool of 2 producers on the shared mock cluster,
// linger.ms 5, closed at the benchmark's end.
func mockLingerPool(b *testing.B) *Pool {
	p, err := New(&Options{Size: 2, Timeout: 10 * time.Second}, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": mock.BootstrapServers(), "linger.ms": "5"})
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

func BenchmarkProduceAsyncWaitMockCluster(b *testing.B) {
	p := mockLingerPool(b)
	ctx := context.Background()
	b.SetBytes(100)
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		p.With(ctx, func(pr *Producer) error {
			var ds []*Delivery
			for pb.Next() {
				d, err := pr.ProduceAsync(&Message{Topic: "bench", Payload: payload100})
				if err != nil {
					b.Fatal(err)
				}
				ds = append(ds, d)
				if len(ds) == 1000 { // wdpool keeps at most 131071 live delivery handles
					waitAll(b, ctx, ds)
					ds = ds[:0]
				}
			}
			waitAll(b, ctx, ds)
			return nil
		})
	})
}

// The same workload with every report taken from one ReportQueue by one
// goroutine (nothing kept per message).
func BenchmarkProduceTaggedMockCluster(b *testing.B) {
	p := mockLingerPool(b)
	q, err := NewReportQueue()
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()
	var sent, taken atomic.Int64
	taking, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]TaggedReport, 1024)
		for {
			n, err := q.Take(taking, buf)
			if err != nil {
				return
			}
			for _, r := range buf[:n] {
				if r.Err != nil {
					b.Error(r.Err)
				}
			}
			taken.Add(int64(n))
		}
	}()
	b.SetBytes(100)
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		p.With(ctx, func(pr *Producer) error {
			for pb.Next() {
				if err := pr.ProduceTagged(&Message{Topic: "bench", Payload: payload100}, q, 0); err != nil {
					b.Fatal(err)
				}
				sent.Add(1)
			}
			return nil
		})
	})
	deadline := time.Now().Add(time.Minute)
	for taken.Load() < sent.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	stop()
	<-done
	if taken.Load() != sent.Load() {
		b.Fatalf("%d reports of %d", taken.Load(), sent.Load())
	}
}

func waitAll(b *testing.B, ctx context.Context, ds []*Delivery) {
	for _, d := range ds {
		if err := d.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// Against a real broker (WDPOOL_KAFKA_BOOTSTRAP): 100-byte messages,
// acks=all, linger.ms 5, 4 goroutines through a pool of 2 producers (the
// workload of ../shared/KAFKA.md's peer figures).
func BenchmarkSendBroker(b *testing.B) {
	bootstrap := os.Getenv("WDPOOL_KAFKA_BOOTSTRAP")
	if bootstrap == "" {
		b.Skip("needs WDPOOL_KAFKA_BOOTSTRAP")
	}
	b.SetParallelism(2)
	benchmarkSend(b, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": "5"})
	})
}

// The C ABI alone: checkout and checkin with one owner, no Go around it.
func BenchmarkRawCheckoutCheckin(b *testing.B) {
	p := newOffline(b, 4, time.Second)
	rawCheckoutCheckin(p, 1)
	defer cpuPerOp(b)()
	if err := rawCheckoutCheckin(p, b.N); err != nil {
		b.Fatal(err)
	}
}

// ProduceAsync and Wait of one 100-byte message on a deliver=false
// producer (acknowledged at once, no broker): what a Delivery costs the
// binding, inside one With.
func BenchmarkProduceAsyncWaitOffline(b *testing.B) {
	p := newOffline(b, 2, 10*time.Second)
	ctx := context.Background()
	b.SetBytes(100)
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		p.With(ctx, func(pr *Producer) error {
			for pb.Next() {
				d, err := pr.ProduceAsync(&Message{Topic: "bench", Payload: payload100})
				if err != nil {
					b.Fatal(err)
				}
				if err := d.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			return nil
		})
	})
}

// Row 10e's loop offline: a With per message, ProduceAsync inside, the
// Deliveries waited on (oldest first) once 1,000 are pending.
func BenchmarkWithProduceAsyncOffline(b *testing.B) {
	p := newOffline(b, 2, 10*time.Second)
	ctx := context.Background()
	b.SetBytes(100)
	defer cpuPerOp(b)()
	b.RunParallel(func(pb *testing.PB) {
		var pending []*Delivery
		for pb.Next() {
			if err := p.With(ctx, func(pr *Producer) error {
				d, err := pr.ProduceAsync(&Message{Topic: "bench", Payload: payload100})
				if err == nil {
					pending = append(pending, d)
				}
				return err
			}); err != nil {
				b.Fatal(err)
			}
			if len(pending) >= 1000 {
				if err := pending[0].Wait(ctx); err != nil {
					b.Fatal(err)
				}
				pending = pending[1:]
			}
		}
		for _, d := range pending {
			if err := d.Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// One cgo call to a C function that does nothing but return a constant:
// what crossing into C and back costs.
func BenchmarkCgoCall(b *testing.B) {
	defer cpuPerOp(b)()
	for b.Loop() {
		abiVersion()
	}
}
