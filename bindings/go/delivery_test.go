package wdpool

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// Failed deliveries read by Wait: the outcome is ErrKafka with the first
// failure's *KafkaError, every report carries its own, and the handles are
// freed once.
// shortTimeoutPool is a pool of 1 producer whose messages time out after
// 300 ms, on a mock cluster of its own with a 1-partition topic; both go
// at the test's end (take the broker down to make messages fail).
func shortTimeoutPool(t *testing.T, topic string) (*MockCluster, *Pool) {
	t.Helper()
	cluster, err := NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Close() })
	if err := cluster.CreateTopic(topic, 1); err != nil {
		t.Fatal(err)
	}
	p, err := New(&Options{Size: 1}, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": cluster.BootstrapServers(),
			"linger.ms": "0", "message.timeout.ms": "300"})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(true) })
	return cluster, p
}

func TestDeliveryFailuresReadByWait(t *testing.T) {
	cluster, p := shortTimeoutPool(t, "gone")
	ctx := ctxTimeout(t, 30*time.Second)
	base := liveDeliveries()
	var one, many *Delivery
	err := p.With(ctx, func(pr *Producer) error {
		if _, err := pr.ProduceSync(ctx, &Message{Topic: "gone", Payload: []byte("warm")}); err != nil {
			return err
		}
		if err := cluster.SetBrokerUp(1, false); err != nil {
			return err
		}
		var err error
		if one, err = pr.ProduceAsync(&Message{Topic: "gone", Payload: []byte("x")}); err != nil {
			return err
		}
		many, err = pr.ProduceManyAsync([]*Message{{Topic: "gone", Payload: []byte("a")}, {Topic: "gone", Payload: []byte("b")}})
		return err
	})
	defer cluster.SetBrokerUp(1, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Delivery{one, many} {
		err := d.Wait(context.Background())
		var k *KafkaError
		if !errors.Is(err, ErrKafka) || !errors.As(err, &k) || k.Code == 0 {
			t.Fatalf("want ErrKafka with a *KafkaError, got %v", err)
		}
		reports := d.Reports()
		if len(reports) != d.Count() {
			t.Fatalf("%d reports for %d messages", len(reports), d.Count())
		}
		for _, r := range reports {
			var rk *KafkaError
			if r.Topic != "gone" || r.Offset != -1 || !errors.As(r.Err, &rk) || rk.Code != k.Code {
				t.Fatalf("report %+v (first failure %v)", r, k)
			}
		}
		if again := d.Wait(context.Background()); again != err {
			t.Fatalf("a second Wait: %v, then %v", err, again)
		}
	}
	if n := liveDeliveries(); n != base {
		t.Fatalf("%d delivery handles live, %d before", n, base)
	}
}

// A Wait that returns nil has read every report, however the reports race
// its reads: many deliveries waited while their reports arrive, from
// several goroutines (a report that came in between the look at the
// reports and the count of missing ones once made Wait return nil with
// nothing read).
func TestDeliveryWaitNilMeansEveryReportRead(t *testing.T) {
	p := mockTopicPool(t, "race", 2)
	ctx := ctxTimeout(t, 60*time.Second)
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		go func() {
			errs <- p.With(ctx, func(pr *Producer) error {
				for i := 0; i < 400; i++ {
					d, err := pr.ProduceManyAsync([]*Message{{Topic: "race", Payload: []byte("a")}, {Topic: "race", Payload: []byte("b")}})
					if err != nil {
						return err
					}
					if err := d.Wait(context.Background()); err != nil {
						return err
					}
					reports := d.Reports()
					if len(reports) != 2 || reports[0].Offset < 0 || reports[1].Offset <= reports[0].Offset {
						return fmt.Errorf("delivery %d: Wait returned nil with reports %+v", i, reports)
					}
				}
				return nil
			})
		}()
	}
	for g := 0; g < 2; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// Single messages report into C slot arrays, one per block of 32
// Deliveries: every Wait reads its own report (racing the reports from
// two goroutines), and an array is freed exactly once, when the garbage
// collector finds its block unreachable, whether its Deliveries were
// waited on, closed or dropped.
func TestSlotDeliveriesReadTheirOwnReportsAndAreFreedOnce(t *testing.T) {
	p := mockTopicPool(t, "slots", 2)
	ctx := ctxTimeout(t, 60*time.Second)
	base := liveSlotArrays.Load()
	handles := liveDeliveries()
	const per = 500
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		go func() {
			errs <- p.With(ctx, func(pr *Producer) error {
				var kept []*Delivery
				offsets := map[int64]bool{}
				for i := 0; i < per; i++ {
					d, err := pr.ProduceAsync(&Message{Topic: "slots", Payload: []byte("x")})
					if err != nil {
						return err
					}
					switch i % 5 {
					case 0: // dropped without a Wait
						continue
					case 1: // closed first
						d.Close()
						if err := d.Wait(ctx); !errors.Is(err, ErrStaleHandle) {
							return fmt.Errorf("Wait after Close: %v", err)
						}
						continue
					case 2: // waited later
						kept = append(kept, d)
						continue
					}
					if err := d.Wait(context.Background()); err != nil {
						return err
					}
					r := d.Report()
					if r.Topic != "slots" || r.Partition != 0 || r.Offset < 0 || r.Err != nil || r.Timestamp.IsZero() || offsets[r.Offset] {
						return fmt.Errorf("delivery %d: report %+v", i, r)
					}
					offsets[r.Offset] = true
					d.Close() // after Wait: harmless, the report stays
					if again := d.Report(); again != r {
						return fmt.Errorf("Report after Close: %+v, was %+v", again, r)
					}
				}
				for _, d := range kept {
					if err := d.Wait(ctx); err != nil {
						return err
					}
					if r := d.Report(); r.Offset < 0 || offsets[r.Offset] {
						return fmt.Errorf("kept delivery: report %+v", r)
					}
					offsets[d.Report().Offset] = true
				}
				return nil
			})
		}()
	}
	for g := 0; g < 2; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := liveSlotArrays.Load() - base; n < 2*per/deliveryBlockSize {
		t.Fatalf("%d slot arrays live for %d single-message Deliveries", n, 2*per)
	}
	if n := liveDeliveries(); n != handles {
		t.Fatalf("%d delivery handles live, %d before: single messages need none", n, handles)
	}
	// Every block is unreachable now; some may still sit in the pool of
	// blocks with unused Deliveries (at most one per P), until a GC empties it.
	eventually(t, "the slot arrays to be freed", func() bool {
		runtime.GC()
		return liveSlotArrays.Load() <= base
	})
	// Earlier tests' blocks may have been freed meanwhile too, but never
	// an array twice: the count cannot go below zero.
	if n := liveSlotArrays.Load(); n < 0 {
		t.Fatalf("%d slot arrays live: some were freed twice", n)
	}
}

// mockTopicPool is a pool of size producers (linger.ms 0) on a mock
// cluster of its own with a 1-partition topic; both go at the test's end.
func mockTopicPool(t *testing.T, topic string, size int) *Pool {
	t.Helper()
	cluster, err := NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Close() })
	if err := cluster.CreateTopic(topic, 1); err != nil {
		t.Fatal(err)
	}
	p, err := New(&Options{Size: size}, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": cluster.BootstrapServers(), "linger.ms": "0"})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(true) })
	return p
}
