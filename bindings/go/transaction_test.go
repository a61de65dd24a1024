package wdpool

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var txnSeq atomic.Int64

// newTxnPool is a pool of transactional producers on the mock cluster,
// recording its transaction events.
func newTxnPool(t *testing.T, size int) (*Pool, func() []string) {
	t.Helper()
	prefix := fmt.Sprintf("go-txn-%d-%d", time.Now().UnixNano(), txnSeq.Add(1))
	p, err := New(&Options{Size: size, Timeout: 20 * time.Second}, func(c *Config, i int) error {
		if err := onMock(c, i); err != nil {
			return err
		}
		return c.SetKafka("transactional.id", fmt.Sprintf("%s-%d", prefix, i))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(true) })
	var mu sync.Mutex
	var evs []string
	unsub, err := Subscribe(func(e Event) {
		if e.PoolID == p.ID() && e.Kind >= EventTransactionStarted && e.Kind <= EventTransactionAborted {
			mu.Lock()
			evs = append(evs, e.Name)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unsub)
	return p, func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := evs
		evs = nil
		return out
	}
}

func last(evs []string) string {
	if len(evs) == 0 {
		return ""
	}
	return evs[len(evs)-1]
}

func TestTransactionOutcomes(t *testing.T) {
	p, events := newTxnPool(t, 1)
	ctx := ctxTimeout(t, 60*time.Second)
	msg := &Message{Topic: "orders", Payload: []byte(`{"id":1}`)}
	produce := func(pr *Producer) error { _, err := pr.ProduceSync(ctx, msg); return err }

	if err := p.Transaction(ctx, produce); err != nil {
		t.Fatal(err)
	}
	if got := last(events()); got != "transaction.committed" {
		t.Fatalf("commit: last event %q", got)
	}

	if err := p.Transaction(ctx, func(pr *Producer) error { produce(pr); return ErrAbortTransaction }); err != nil {
		t.Fatalf("abort: %v", err)
	}
	if got := last(events()); got != "transaction.aborted" {
		t.Fatalf("abort: last event %q", got)
	}

	mine := errors.New("order invalid")
	if err := p.Transaction(ctx, func(pr *Producer) error { produce(pr); return mine }); err != mine {
		t.Fatalf("fail: %v", err)
	}
	if got := last(events()); got != "transaction.aborted" {
		t.Fatalf("fail: last event %q", got)
	}

	// Nested through the producer's context: one transaction.
	err := p.Transaction(ctx, func(pr *Producer) error {
		produce(pr)
		return p.Transaction(pr.Context(), func(inner *Producer) error {
			info, err := inner.Info()
			if err != nil || info.Depth != 2 {
				return fmt.Errorf("inner depth %+v %v", info, err)
			}
			return produce(inner)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if evs := events(); len(evs) != 2 || evs[1] != "transaction.committed" {
		t.Fatalf("nested: events %v", evs)
	}
	// An inner abort rolls the whole transaction back, without an error.
	err = p.Transaction(ctx, func(pr *Producer) error {
		produce(pr)
		return p.Transaction(pr.Context(), func(*Producer) error { return ErrAbortTransaction })
	})
	if err != nil || last(events()) != "transaction.aborted" {
		t.Fatalf("inner abort: %v", err)
	}
	// An inner failure swallowed by the outer function still rolls back.
	err = p.Transaction(ctx, func(pr *Producer) error {
		_ = p.Transaction(pr.Context(), func(*Producer) error { return mine })
		return nil
	})
	if !errors.Is(err, ErrTransactionAborted) || last(events()) != "transaction.aborted" {
		t.Fatalf("inner failure: %v", err)
	}
	// An inner level left by a panic that the outer function recovers:
	// the whole transaction rolls back and reports ErrEarlyExit.
	err = p.Transaction(ctx, func(pr *Producer) error {
		func() {
			defer func() { recover() }()
			p.Transaction(pr.Context(), func(*Producer) error { panic("inner") })
		}()
		return nil
	})
	if !errors.Is(err, ErrEarlyExit) || last(events()) != "transaction.aborted" {
		t.Fatalf("inner early exit: %v", err)
	}
	if s, _ := p.Stats(); s.InUse != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTransactionPanicRollsBackThenRepanics(t *testing.T) {
	p, events := newTxnPool(t, 1)
	ctx := ctxTimeout(t, 60*time.Second)
	func() {
		defer func() {
			if r := recover(); r != "order panic" {
				t.Fatalf("recovered %v", r)
			}
			if s, _ := p.Stats(); s.InUse != 0 {
				t.Fatalf("producer not back: %+v", s)
			}
			if got := last(events()); got != "transaction.aborted" {
				t.Fatalf("not rolled back before the panic reached the caller: %q", got)
			}
		}()
		p.Transaction(ctx, func(pr *Producer) error {
			pr.ProduceSync(ctx, &Message{Topic: "orders", Payload: []byte("x")})
			panic("order panic")
		})
	}()
	// Goexit: the same, and the goroutine still exits.
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Transaction(ctx, func(pr *Producer) error {
			pr.ProduceSync(ctx, &Message{Topic: "orders", Payload: []byte("x")})
			runtime.Goexit()
			return nil
		})
		t.Error("Goexit did not go on")
	}()
	<-done
	if got := last(events()); got != "transaction.aborted" {
		t.Fatalf("Goexit: last event %q", got)
	}
	// The pool is whole: a transaction commits.
	if err := p.Transaction(ctx, func(pr *Producer) error {
		_, err := pr.ProduceSync(ctx, &Message{Topic: "orders", Payload: []byte("y")})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if s, _ := p.Stats(); s.InUse != 0 || s.Replaced != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestGlobalPool(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	if !Active() {
		// Never set up in this process, or closed by an earlier run.
		if err := With(ctx, func(*Producer) error { return nil }); !errors.Is(err, ErrNotSetUp) && !errors.Is(err, ErrPoolClosed) {
			t.Fatalf("want ErrNotSetUp, got %v", err)
		}
	}
	if err := Setup(&Options{Size: 2, Timeout: 5 * time.Second}, offline); err != nil {
		t.Fatal(err)
	}
	if !Active() {
		t.Fatal("not active")
	}
	err := With(ctx, func(pr *Producer) error {
		_, err := pr.ProduceSync(ctx, &Message{Topic: "events", Payload: []byte("my message")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := Send(ctx, &Message{Topic: "events", Payload: []byte("sent")}); err != nil {
		t.Fatalf("Send: %v", err)
	}
	q, err := NewReportQueue()
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if err := ProduceTagged(ctx, &Message{Topic: "events", Payload: []byte("tagged")}, q, 7); err != nil {
		t.Fatalf("ProduceTagged: %v", err)
	}
	reports := make([]TaggedReport, 1)
	if n, err := q.Take(ctx, reports); err != nil || n != 1 || reports[0].Tag != 7 {
		t.Fatalf("the global ProduceTagged's report: %d %+v %v", n, reports[0], err)
	}
	d, err := ProduceAsync(ctx, &Message{Topic: "events", Payload: []byte("async")})
	if err != nil {
		t.Fatalf("ProduceAsync: %v", err)
	}
	if err := d.Wait(ctx); err != nil || d.Report().Topic != "events" {
		t.Fatalf("the global ProduceAsync's report: %+v %v", d.Report(), err)
	}
	if err := Transaction(ctx, func(*Producer) error { return nil }); !errors.Is(err, ErrNotTransactional) {
		t.Fatalf("want ErrNotTransactional, got %v", err)
	}
	if err := Reload(); err != nil {
		t.Fatal(err)
	}
	if s, err := GlobalStats(); err != nil || s.Size != 2 || s.InUse != 0 {
		t.Fatalf("%+v %v", s, err)
	}
	if err := Close(); err != nil {
		t.Fatal(err)
	}
	if err := Close(); err != nil {
		t.Fatal(err)
	}
	if err := With(ctx, func(*Producer) error { return nil }); !errors.Is(err, ErrPoolClosed) && !errors.Is(err, ErrNotSetUp) {
		t.Fatalf("after close: %v", err)
	}
	if err := Send(ctx, &Message{Topic: "events"}); !errors.Is(err, ErrPoolClosed) && !errors.Is(err, ErrNotSetUp) {
		t.Fatalf("Send after close: %v", err)
	}
	if d, err := ProduceAsync(ctx, &Message{Topic: "events"}); d != nil || (!errors.Is(err, ErrPoolClosed) && !errors.Is(err, ErrNotSetUp)) {
		t.Fatalf("ProduceAsync after close: %v %v", d, err)
	}
}
