package wdpool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Cancellation: a context cancelled while a call waits in C makes the call
// return ctx.Err() at once; the C call ends by itself later and whatever it
// got goes back. Nothing is left behind: no call waiting, no goroutine, no
// cgo or delivery handle, every producer back in its pool.

type leftovers struct {
	goroutines        int
	handles, delivers int64
}

func countLeftovers() leftovers {
	return leftovers{runtime.NumGoroutine(), liveHandles(), liveDeliveries()}
}

// settle waits until the package is back to base.
func settle(t *testing.T, base leftovers) {
	t.Helper()
	eventually(t, "every call waiting in C to end", func() bool { return callsWaiting.Load() == 0 })
	eventually(t, "goroutines, handles and deliveries back to the baseline", func() bool {
		now := countLeftovers()
		return now.goroutines <= base.goroutines && now.handles == base.handles && now.delivers == base.delivers
	})
}

// Cancelled while waiting for a producer of a pool of 1 held by another
// goroutine: With and Transaction return context.Canceled while the
// producer is still held, their functions never run, and the checkouts
// they left get the producer in turn and give it back.
func TestCancelWaitForProducer(t *testing.T) {
	for _, procs := range []int{1, 8} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			p := newOffline(t, 1, time.Minute)
			bg := context.Background()
			if err := p.With(bg, func(*Producer) error { return nil }); err != nil { // create it
				t.Fatal(err)
			}
			base := countLeftovers()
			held, release := make(chan struct{}), make(chan struct{})
			holder := make(chan error, 1)
			go func() {
				holder <- p.With(bg, func(*Producer) error { close(held); <-release; return nil })
			}()
			<-held
			contexts := []func() (context.Context, context.CancelFunc){
				func() (context.Context, context.CancelFunc) { return context.WithCancel(bg) },
				func() (context.Context, context.CancelFunc) { return context.WithTimeout(bg, time.Hour) },
			}
			waiting := 0
			for _, txn := range []bool{false, true} {
				for _, newCtx := range contexts {
					ctx, cancel := newCtx()
					ran := make(chan struct{}, 1)
					errc := make(chan error, 1)
					go func() {
						errc <- run(ctx, p, txn, func(*Producer) error { ran <- struct{}{}; return nil })
					}()
					waiting++ // the checkouts given up before wait on in C
					eventually(t, "the checkout to wait", func() bool { s, _ := p.Stats(); return s.Waiting == waiting })
					cancel()
					if err := <-errc; !errors.Is(err, context.Canceled) {
						t.Fatalf("txn %v: want context.Canceled, got %v", txn, err)
					}
					select {
					case <-ran:
						t.Fatal("the function ran")
					default:
					}
				}
			}
			if s, _ := p.Stats(); s.InUse != 1 {
				t.Fatalf("the holder lost its producer: %+v", s)
			}
			close(release)
			if err := <-holder; err != nil {
				t.Fatal(err)
			}
			settle(t, base)
			if s, _ := p.Stats(); s.InUse != 0 || s.Waiting != 0 || s.Available() != 1 {
				t.Fatalf("stats %+v", s)
			}
			if err := p.With(bg, func(*Producer) error { return nil }); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A deadline still ends a wait for a producer with ErrPoolTimeout (what
// was not available), not a bare context error.
func TestDeadlineWaitForProducer(t *testing.T) {
	p := newOffline(t, 1, time.Minute)
	bg := context.Background()
	err := p.With(bg, func(*Producer) error {
		ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
		defer cancel()
		err := p.With(ctx, func(*Producer) error { return nil })
		if !errors.Is(err, ErrPoolTimeout) {
			return fmt.Errorf("want ErrPoolTimeout, got %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Cancelled while ProduceSync, Delivery.Wait and Flush wait for a broker
// that is down: each returns context.Canceled while the broker is still
// down; once it is back, the calls left in C end and nothing is left.
func TestCancelWaitForBroker(t *testing.T) {
	cluster, err := NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	if err := cluster.CreateTopic("slow", 1); err != nil {
		t.Fatal(err)
	}
	p, err := New(&Options{Size: 1, Timeout: time.Minute}, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": cluster.BootstrapServers(), "linger.ms": "0",
			"reconnect.backoff.ms": "10", "reconnect.backoff.max.ms": "100"})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(true)
	bg := context.Background()
	msg := &Message{Topic: "slow", Payload: []byte("x")}
	if err := p.With(bg, func(pr *Producer) error { _, err := pr.ProduceSync(bg, msg); return err }); err != nil {
		t.Fatal(err) // connected, metadata known
	}
	base := countLeftovers()
	if err := cluster.SetBrokerUp(1, false); err != nil {
		t.Fatal(err)
	}
	up := false
	defer func() {
		if !up {
			cluster.SetBrokerUp(1, true)
		}
	}()
	// cancelled starts call, waits until it waits in C (want more calls
	// waiting than before), cancels it and checks what it returned.
	cancelled := func(what string, call func(ctx context.Context) error) error {
		before := callsWaiting.Load()
		ctx, cancel := context.WithCancel(bg)
		errc := make(chan error, 1)
		go func() { errc <- call(ctx) }()
		eventually(t, what+" to wait in C", func() bool { return callsWaiting.Load() > before })
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: want context.Canceled, got %v", what, err)
		}
		return nil
	}
	var d *Delivery
	err = p.With(bg, func(pr *Producer) error {
		if err := cancelled("ProduceSync", func(ctx context.Context) error {
			_, err := pr.ProduceSync(ctx, msg)
			return err
		}); err != nil {
			return err
		}
		if err := cancelled("ProduceManySync", func(ctx context.Context) error {
			_, err := pr.ProduceManySync(ctx, []*Message{msg, msg})
			return err
		}); err != nil {
			return err
		}
		var err error
		if d, err = pr.ProduceAsync(msg); err != nil {
			return err
		}
		if err := cancelled("Delivery.Wait", d.Wait); err != nil {
			return err
		}
		// Called again: a deadline ends it with DELIVERY_TIMEOUT.
		short, cancel := context.WithTimeout(bg, 20*time.Millisecond)
		defer cancel()
		if err := d.Wait(short); !errors.Is(err, ErrDeliveryTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("Wait at the deadline: %v", err)
		}
		// Closed while a Wait waits: that Wait returns at once.
		d2, err := pr.ProduceAsync(msg)
		if err != nil {
			return err
		}
		before := callsWaiting.Load()
		ctx, cancel := context.WithCancel(bg)
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- d2.Wait(ctx) }()
		eventually(t, "Wait to wait in C", func() bool { return callsWaiting.Load() > before })
		d2.Close()
		if err := <-errc; !errors.Is(err, ErrStaleHandle) {
			return fmt.Errorf("Wait on a closed delivery: %v", err)
		}
		return cancelled("Flush", pr.Flush)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := callsWaiting.Load(); n == 0 {
		t.Fatal("every call ended while the broker was down")
	}
	if s, _ := p.Stats(); s.InUse != 0 {
		t.Fatalf("the producer did not go back: %+v", s)
	}
	up = true
	if err := cluster.SetBrokerUp(1, true); err != nil {
		t.Fatal(err)
	}
	if err := d.Wait(bg); err != nil {
		t.Fatalf("the delivery, once the broker is back: %v", err)
	}
	if r := d.Report(); r.Offset < 0 || r.Topic != "slow" {
		t.Fatalf("report %+v", r)
	}
	settle(t, base)
}

// A Transaction whose function returns nil after its context was
// cancelled is rolled back and returns the context's error.
func TestCancelledTransactionRollsBack(t *testing.T) {
	p, events := newTxnPool(t, 1)
	bg := context.Background()
	ctx, cancel := context.WithCancel(bg)
	err := p.Transaction(ctx, func(pr *Producer) error {
		if _, err := pr.ProduceSync(ctx, &Message{Topic: "orders", Payload: []byte("1")}); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if got := last(events()); got != "transaction.aborted" {
		t.Fatalf("last event %q", got)
	}
	if err := p.Transaction(bg, func(*Producer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := last(events()); got != "transaction.committed" {
		t.Fatalf("last event %q", got)
	}
}

// Many goroutines through a pool of 2, each With cancelled at a random
// moment (before, while or after it waits): each returns nil (its function
// ran) or context.Canceled (it did not), and afterwards every producer is
// back and nothing is left behind.
func TestCancelUnderLoad(t *testing.T) {
	p := newOffline(t, 2, time.Minute)
	bg := context.Background()
	if err := p.With(bg, func(*Producer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	base := countLeftovers()
	var wg sync.WaitGroup
	var ran, cancelled atomic.Int64
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for i := 0; i < 30; i++ {
				ctx, cancel := context.WithCancel(bg)
				if rng.IntN(2) == 0 {
					go cancel() // races with the checkout
				}
				didRun := false
				err := p.With(ctx, func(*Producer) error {
					didRun = true
					for range 50 {
						runtime.Gosched() // hold it a while: the others wait
					}
					return nil
				})
				cancel()
				switch {
				case err == nil && didRun:
					ran.Add(1)
				case errors.Is(err, context.Canceled) && !didRun:
					cancelled.Add(1)
				default:
					t.Errorf("err %v, ran %v", err, didRun)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	settle(t, base)
	if s, _ := p.Stats(); s.InUse != 0 || s.Waiting != 0 || s.Available() != 2 {
		t.Fatalf("stats %+v", s)
	}
	t.Logf("%d ran, %d cancelled", ran.Load(), cancelled.Load())
}
