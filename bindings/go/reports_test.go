package wdpool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Every message produced with ProduceTagged gets exactly one report with
// its tag, whichever goroutine takes it: 4 producing goroutines (a With
// per message, every fifth message with a header: the general path), 2
// takers with small buffers.
func TestReportQueueEveryTagOnce(t *testing.T) {
	const goroutines, each = 4, 500
	p := mockTopicPool(t, "tagged", 2)
	q := newQueue(t)
	ctx := ctxTimeout(t, 60*time.Second)

	producedWait := spread(goroutines, each, func(g, i int) bool {
		m := &Message{Topic: "tagged", Payload: []byte(fmt.Sprint(g, i))}
		if i%5 == 0 {
			m.Headers = []Header{{Key: "h", Value: []byte("v")}}
		}
		tag := uint64(g*each + i)
		if err := p.With(ctx, func(pr *Producer) error { return pr.ProduceTagged(m, q, tag) }); err != nil {
			t.Errorf("ProduceTagged %d: %v", tag, err)
			return false
		}
		return true
	})

	var mu sync.Mutex
	seen := make(map[uint64]int)
	var takers sync.WaitGroup
	for range 2 {
		takers.Add(1)
		go func() {
			defer takers.Done()
			buf := make([]TaggedReport, 7)
			for {
				mu.Lock()
				done := len(seen) == goroutines*each
				mu.Unlock()
				if done {
					return
				}
				short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
				n, err := q.Take(short, buf)
				cancel()
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Take: %v", err)
					return
				}
				if ctx.Err() != nil {
					t.Errorf("reports missing at the deadline")
					return
				}
				mu.Lock()
				for _, r := range buf[:n] {
					seen[r.Tag]++
					if r.Err != nil || r.Partition != 0 || r.Offset < 0 || r.Timestamp.IsZero() {
						t.Errorf("report %+v", r)
					}
				}
				mu.Unlock()
			}
		}()
	}
	producedWait()
	takers.Wait()
	if len(seen) != goroutines*each {
		t.Fatalf("%d tags reported of %d", len(seen), goroutines*each)
	}
	for tag, n := range seen {
		if n != 1 || tag >= goroutines*each {
			t.Fatalf("tag %d reported %d times", tag, n)
		}
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len %d after every report was taken", n)
	}
	// Nothing left: a Take waits out its deadline and says so.
	n, err := q.Take(ctxTimeout(t, 30*time.Millisecond), make([]TaggedReport, 4))
	if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Take on an empty queue: %d, %v", n, err)
	}
	if s, err := p.Stats(); err != nil || s.Available() != s.Size {
		t.Fatalf("stats %+v, %v", s, err)
	}
}

// A message that cannot be delivered gets its report with librdkafka's
// code as a *KafkaError, and no offset.
func TestReportQueueFailureCarriesKafkaError(t *testing.T) {
	cluster, p := shortTimeoutPool(t, "tagged-gone")
	q := newQueue(t)
	ctx := ctxTimeout(t, 30*time.Second)
	err := p.With(ctx, func(pr *Producer) error {
		if _, err := pr.ProduceSync(ctx, &Message{Topic: "tagged-gone", Payload: []byte("warm")}); err != nil {
			return err
		}
		if err := cluster.SetBrokerUp(1, false); err != nil {
			return err
		}
		return pr.ProduceTagged(&Message{Topic: "tagged-gone", Payload: []byte("x")}, q, 42)
	})
	defer cluster.SetBrokerUp(1, true)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]TaggedReport, 4)
	n, err := q.Take(ctx, buf)
	if err != nil || n != 1 {
		t.Fatalf("Take: %d, %v", n, err)
	}
	var k *KafkaError
	if r := buf[0]; r.Tag != 42 || r.Offset != -1 || !errors.As(r.Err, &k) || k.Code == 0 || k.Message == "" {
		t.Fatalf("report %+v", r)
	}
}

// Close ends a Take waiting on another goroutine, and every later call
// says the queue is closed; a cancelled context ends a Take too; nil and
// empty arguments are refused or answered at once.
func TestReportQueueCloseAndCancel(t *testing.T) {
	p := newOffline(t, 1, time.Second)
	q, err := NewReportQueue()
	if err != nil {
		t.Fatal(err)
	}

	cctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := q.Take(cctx, make([]TaggedReport, 1))
		got <- err
	}()
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Take after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled Take did not return")
	}

	go func() {
		_, err := q.Take(context.Background(), make([]TaggedReport, 1))
		got <- err
	}()
	// Close while the Take waits in C (or before it started: the same
	// outcome).
	q.Close()
	select {
	case err := <-got:
		if !errors.Is(err, ErrStaleHandle) {
			t.Fatalf("Take ended by Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a waiting Take")
	}
	q.Close() // nothing

	ctx := ctxTimeout(t, 10*time.Second)
	err = p.With(ctx, func(pr *Producer) error {
		if err := pr.ProduceTagged(&Message{Topic: "t", Payload: []byte("x")}, q, 1); !errors.Is(err, ErrStaleHandle) {
			t.Errorf("ProduceTagged into a closed queue: %v", err)
		}
		if err := pr.ProduceTagged(&Message{Topic: "t"}, nil, 1); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ProduceTagged into nil: %v", err)
		}
		open, err := NewReportQueue()
		if err != nil {
			return err
		}
		defer open.Close()
		if err := pr.ProduceTagged(&Message{Topic: ""}, open, 1); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("an invalid message: %v", err)
		}
		if n, err := open.Take(ctx, nil); n != 0 || err != nil {
			t.Errorf("Take into nothing: %d, %v", n, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := q.Take(ctx, make([]TaggedReport, 1)); n != 0 || !errors.Is(err, ErrStaleHandle) {
		t.Fatalf("Take on a closed queue: %d, %v", n, err)
	}
	if q.Len() != 0 {
		t.Fatal("Len of a closed queue")
	}

	// A producer handle kept past its With is refused, the queue open.
	open, err := NewReportQueue()
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	var kept *Producer
	if err := p.With(ctx, func(pr *Producer) error { kept = pr; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := kept.ProduceTagged(&Message{Topic: "t", Payload: []byte("x")}, open, 1); !errors.Is(err, ErrStaleHandle) {
		t.Fatalf("a stale producer: %v", err)
	}
}
