package wdpool

import (
	"context"
	"os"
	"testing"
	"time"
)

// An empty With against a plain buffered-channel pool of the same size:
// what wdpool's checkout/checkin costs over the cheapest Go pool.

func BenchmarkWithEmpty(b *testing.B) {
	p := newOffline(b, 4, time.Second)
	ctx := context.Background()
	empty := func(*Producer) error { return nil }
	p.With(ctx, empty) // create the producer
	b.ResetTimer()
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
	for b.Loop() {
		c.with(empty)
	}
}

func BenchmarkChannelPoolEmptyParallel(b *testing.B) {
	c := newChanPool(4)
	empty := func(*int) error { return nil }
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

func BenchmarkSendMockCluster(b *testing.B) {
	benchmarkSend(b, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": mock.BootstrapServers(), "linger.ms": "5"})
	})
}

// ProduceAsync with a Delivery per message, waited on at the end.
func BenchmarkProduceAsyncWaitMockCluster(b *testing.B) {
	p, err := New(&Options{Size: 2, Timeout: 10 * time.Second}, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": mock.BootstrapServers(), "linger.ms": "5"})
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.SetBytes(100)
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
	b.ResetTimer()
	if err := rawCheckoutCheckin(p, b.N); err != nil {
		b.Fatal(err)
	}
}
