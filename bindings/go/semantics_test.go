package wdpool

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A pool of 1 lets one goroutine at a time hold its producer, whatever
// GOMAXPROCS: owners are contexts, not OS threads.
func TestPoolOfOneBoundsConcurrency(t *testing.T) {
	for _, procs := range []int{1, 8} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			p := newOffline(t, 1, 30*time.Second)
			var inside, maxInside, done atomic.Int64
			var wg sync.WaitGroup
			for g := 0; g < 64; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 5; i++ {
						err := p.With(context.Background(), func(pr *Producer) error {
							n := inside.Add(1)
							for {
								m := maxInside.Load()
								if n <= m || maxInside.CompareAndSwap(m, n) {
									break
								}
							}
							runtime.Gosched() // let others try to get in
							_, err := pr.ProduceSync(context.Background(), &Message{Topic: "t", Payload: []byte("x")})
							inside.Add(-1)
							return err
						})
						if err != nil {
							t.Error(err)
							return
						}
						done.Add(1)
					}
				}()
			}
			wg.Wait()
			if maxInside.Load() != 1 || done.Load() != 64*5 {
				t.Fatalf("max inside %d, done %d", maxInside.Load(), done.Load())
			}
			s, _ := p.Stats()
			if s.InUse != 0 || s.Idle != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

func TestNestedWithSharesProducerOnlyThroughContext(t *testing.T) {
	p := newOffline(t, 1, 5*time.Second)
	ctx := context.Background()
	err := p.With(ctx, func(outer *Producer) error {
		// Given the context it got: the same producer, no deadlock on size 1.
		err := p.With(outer.Context(), func(inner *Producer) error {
			a, err1 := inner.Info()
			b, err2 := outer.Info()
			if err1 != nil || err2 != nil || a.Index != b.Index {
				return fmt.Errorf("nested With: %+v %v, outer %+v %v", a, err1, b, err2)
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Another context (here the outer one, without the owner): a new
		// owner, which waits, and the pool of 1 is busy.
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		err = p.With(short, func(*Producer) error { return errors.New("must not run") })
		if !errors.Is(err, ErrPoolTimeout) {
			return fmt.Errorf("want ErrPoolTimeout, got %v", err)
		}
		if !strings.Contains(err.Error(), "0/1") {
			return fmt.Errorf("timeout message lacks 0/1: %v", err)
		}
		// The outer producer is still usable after the nested checkin.
		_, err = outer.ProduceSync(ctx, &Message{Topic: "t", Payload: []byte("x")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// A producer used after its With is stale.
	var leaked *Producer
	p.With(ctx, func(pr *Producer) error { leaked = pr; return nil })
	if _, err := leaked.ProduceSync(ctx, &Message{Topic: "t"}); !errors.Is(err, ErrStaleHandle) {
		t.Fatalf("want ErrStaleHandle, got %v", err)
	}
	s, _ := p.Stats()
	if s.InUse != 0 || s.CheckoutTimeouts != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPanicInWithIsRepanickedAfterCheckin(t *testing.T) {
	p := newOffline(t, 1, time.Second)
	func() {
		defer func() {
			r := recover()
			if r != "boom" {
				t.Fatalf("recovered %v", r)
			}
			s, _ := p.Stats()
			if s.InUse != 0 {
				t.Fatalf("producer not back when the panic reached the caller: %+v", s)
			}
		}()
		p.With(context.Background(), func(*Producer) error { panic("boom") })
	}()
	if err := p.With(context.Background(), func(*Producer) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestGoexitInWith(t *testing.T) {
	p := newOffline(t, 1, time.Second)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.With(context.Background(), func(*Producer) error { runtime.Goexit(); return nil })
		t.Error("Goexit did not go on")
	}()
	<-done
	s, _ := p.Stats()
	if s.InUse != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestErrorsComeBackUnchanged(t *testing.T) {
	p := newOffline(t, 1, time.Second)
	mine := fmt.Errorf("wrapped: %w", context.Canceled)
	err := p.With(context.Background(), func(*Producer) error { return mine })
	if err != mine || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	err = p.Transaction(context.Background(), func(*Producer) error { return nil })
	if !errors.Is(err, ErrNotTransactional) {
		t.Fatalf("want ErrNotTransactional, got %v", err)
	}
	if s, _ := p.Stats(); s.InUse != 0 {
		t.Fatalf("stats %+v", s)
	}
	p.Close()
	err = p.With(context.Background(), func(*Producer) error { return nil })
	if !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("want ErrPoolClosed, got %v", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Code != ResultClosed {
		t.Fatalf("errors.As: %v", err)
	}
	// A context already done never checks out.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.With(ctx, func(*Producer) error { return nil }); err != context.Canceled {
		t.Fatalf("got %v", err)
	}
}

func TestAsyncDeliveriesFreedOnce(t *testing.T) {
	p := newOffline(t, 2, time.Second)
	ctx := ctxTimeout(t, 10*time.Second)
	var kept []*Delivery
	err := p.With(ctx, func(pr *Producer) error {
		for i := 0; i < 20; i++ {
			d, err := pr.ProduceAsync(&Message{Topic: "events", Payload: []byte(fmt.Sprint(i)), Partition: Partition(0)})
			if err != nil {
				return err
			}
			kept = append(kept, d)
		}
		many, err := pr.ProduceManyAsync([]*Message{{Topic: "a", Payload: []byte("1")}, {Topic: "b", Payload: nil}})
		if err != nil {
			return err
		}
		if err := many.Wait(ctx); err != nil {
			return err
		}
		if len(many.Reports()) != 2 || many.Reports()[1].Topic != "b" {
			return fmt.Errorf("reports %+v", many.Reports())
		}
		reps, err := pr.ProduceManySync(ctx, []*Message{{Topic: "a"}, {Topic: "b", Key: []byte("k")}})
		if err != nil || len(reps) != 2 {
			return fmt.Errorf("many sync %v %v", reps, err)
		}
		if _, err := pr.ProduceManyAsync([]*Message{{Topic: "ok"}, {Topic: "not ok"}}); !errors.Is(err, ErrInvalidMessage) {
			return fmt.Errorf("want ErrInvalidMessage, got %v", err)
		}
		return pr.Flush(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Deliveries outlive the With.
	for i, d := range kept {
		if i%2 == 0 {
			if err := d.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if err := d.Wait(ctx); err != nil { // cached, no second free
				t.Fatal(err)
			}
		}
		d.Close()
		d.Close()
	}
	kept = nil
	if n := liveDeliveries(); n != 0 {
		t.Fatalf("%d delivery handles not freed", n)
	}
	// Dropped without Wait or Close: the garbage collector frees it.
	p.With(ctx, func(pr *Producer) error { _, err := pr.ProduceAsync(&Message{Topic: "gc"}); return err })
	eventually(t, "the dropped delivery to be freed", func() bool {
		runtime.GC()
		return liveDeliveries() == 0
	})
}

func TestHandlesDeletedExactlyOnce(t *testing.T) {
	before := liveHandles()
	for i := 0; i < 10; i++ {
		p, err := New(&Options{Size: 3}, offline)
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
		if _, err := New(&Options{Size: 3}, func(*Config, int) error { return errors.New("no") }); err == nil {
			t.Fatal("want an error")
		}
		func() {
			defer func() {
				if r := recover(); r != "configure panic" {
					t.Fatalf("recovered %v", r)
				}
			}()
			New(&Options{Size: 3}, func(c *Config, i int) error {
				if i == 1 {
					panic("configure panic")
				}
				return nil
			})
		}()
		unsub, err := Subscribe(func(Event) {})
		if err != nil {
			t.Fatal(err)
		}
		unsub()
		unsub()
	}
	eventually(t, "handles back to their count", func() bool { return liveHandles() == before })
}

func TestEventsAndReload(t *testing.T) {
	var mu sync.Mutex
	var names []string
	var poolID atomic.Uint64
	unsub, err := Subscribe(func(e Event) {
		if e.PoolID != poolID.Load() && e.Kind != EventCreated {
			return
		}
		mu.Lock()
		names = append(names, e.Name)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	p, err := New(&Options{Size: 1, Timeout: 20 * time.Millisecond}, offline)
	if err != nil {
		t.Fatal(err)
	}
	poolID.Store(p.ID())
	p.With(context.Background(), func(pr *Producer) error {
		p.With(context.Background(), func(*Producer) error { return nil }) // times out
		return nil
	})
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := strings.Join(names, ",")
	mu.Unlock()
	for _, want := range []string{"connection_pool.created", "connection_pool.checkout_timeout", "connection_pool.reload", "connection_pool.reloaded", "connection_pool.shutdown"} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %s in %s", want, got)
		}
	}
	if i, j := strings.Index(got, "connection_pool.reload,"), strings.Index(got, "connection_pool.reloaded"); i < 0 || i > j {
		t.Fatalf("reload must come before reloaded: %s", got)
	}
}

func TestOwnersAcrossGoroutinesAndSlotIndexes(t *testing.T) {
	var indexes []int
	p, err := New(&Options{Size: 2, Timeout: 5 * time.Second}, func(c *Config, i int) error {
		indexes = append(indexes, i)
		return c.SetDeliver(false)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if fmt.Sprint(indexes) != "[0 1]" {
		t.Fatalf("configure indexes %v", indexes)
	}
	ctx := context.Background()
	err = p.With(ctx, func(outer *Producer) error {
		a, _ := outer.Info()
		// A fresh context, even on this goroutine, is another owner: the other slot.
		var other ProducerInfo
		if err := p.With(ctx, func(pr *Producer) error { other, _ = pr.Info(); return nil }); err != nil {
			return err
		}
		// The producer's context handed to another goroutine: the same slot.
		shared := make(chan ProducerInfo)
		go func() {
			var info ProducerInfo
			p.With(outer.Context(), func(pr *Producer) error { info, _ = pr.Info(); return nil })
			shared <- info
		}()
		s := <-shared
		if other.Index == a.Index || s.Index != a.Index {
			return fmt.Errorf("outer %d, fresh context %d, shared context %d", a.Index, other.Index, s.Index)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Owner tokens taken on many goroutines at once (garbage collections
// included) are all distinct, and none is WDPOOL_OWNER_THREAD or
// WDPOOL_OWNER_NONE.
func TestOwnerTokensAreUniqueAcrossGoroutines(t *testing.T) {
	const goroutines, each = 8, 20000
	got := make([][]uint64, goroutines)
	spread(goroutines, each, func(g, i int) bool {
		if i%5000 == 0 {
			runtime.GC()
		}
		got[g] = append(got[g], newOwner())
		return true
	})()
	seen := make(map[uint64]bool, goroutines*each)
	for _, tokens := range got {
		for _, o := range tokens {
			if o == 0 || o == math.MaxUint64 {
				t.Fatalf("token %d is reserved", o)
			}
			if seen[o] {
				t.Fatalf("token %d handed out twice", o)
			}
			seen[o] = true
		}
	}
}
