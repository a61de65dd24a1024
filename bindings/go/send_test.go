package wdpool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"
)

// Pool.Send, Pool.ProduceTagged and Pool.ProduceAsync (each Delivery
// waited) from 8 goroutines through a pool of 2, every fourth message with
// a header (the With path), the others in one cgo call (the C ABI's
// wdpool_pool_produce_*): every tagged message is reported delivered
// exactly once, every Delivery waits without an error, the
// pool closes with nothing undelivered and every slot back. Against the
// mock cluster; against a real broker when WDPOOL_KAFKA_BOOTSTRAP and
// WDPOOL_KAFKA_READ are set, where every message is read back exactly once.
func TestPoolSendDeliversEverything(t *testing.T) {
	const goroutines, each = 8, 200
	bootstrap, reader := os.Getenv("WDPOOL_KAFKA_BOOTSTRAP"), os.Getenv("WDPOOL_KAFKA_READ")
	topic := fmt.Sprintf("go-pool-send-%d", time.Now().UnixNano())
	var p *Pool
	if bootstrap == "" || reader == "" {
		bootstrap, reader = "", ""
		p = mockTopicPool(t, topic, 2)
	} else {
		var err error
		p, err = New(&Options{Size: 2, Timeout: 30 * time.Second}, func(c *Config, _ int) error {
			return c.SetKafkaMap(map[string]string{"bootstrap.servers": bootstrap, "linger.ms": "1"})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	q := newQueue(t)
	ctx := ctxTimeout(t, 90*time.Second)

	spread(goroutines, each, func(g, i int) bool {
		n := g*each + i
		m := &Message{Topic: topic, Key: []byte(fmt.Sprint("k", n)), Payload: []byte("x")}
		if i%4 == 0 {
			m.Headers = []Header{{Key: "h", Value: []byte("v")}}
		}
		var err error
		switch {
		case i%2 == 0:
			err = p.ProduceTagged(ctx, m, q, uint64(n))
		case i%4 == 1:
			var d *Delivery
			if d, err = p.ProduceAsync(ctx, m); err == nil {
				err = d.Wait(ctx)
			}
		default:
			err = p.Send(ctx, m)
		}
		if err != nil {
			t.Errorf("message %d: %v", n, err)
			return false
		}
		return true
	})()

	tagged := goroutines * each / 2
	seen := map[uint64]int{}
	buf := make([]TaggedReport, 64)
	for len(seen) < tagged {
		n, err := q.Take(ctx, buf)
		if err != nil {
			t.Fatalf("Take with %d of %d reports: %v", len(seen), tagged, err)
		}
		for _, r := range buf[:n] {
			if r.Err != nil {
				t.Errorf("tag %d: %v", r.Tag, r.Err)
			}
			seen[r.Tag]++
		}
	}
	for tag, c := range seen {
		if c != 1 || (tag%each)%2 != 0 {
			t.Errorf("tag %d reported %d times", tag, c)
		}
	}
	if s, err := p.Stats(); err != nil || s.InUse != 0 || s.Available() != 2 {
		t.Fatalf("stats %+v %v", s, err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if reader == "" {
		return
	}
	got := readBack(t, reader, bootstrap, topic, "read_uncommitted", goroutines*each)
	for n := range goroutines * each {
		if c := got[fmt.Sprint("k", n)]; c != 1 {
			t.Errorf("key k%d read back %d times", n, c)
		}
	}
	t.Logf("%d messages sent with Pool.Send / Pool.ProduceTagged / Pool.ProduceAsync, each read back once", goroutines*each)
}

// Pool.Send is the With it stands for: it waits for a producer when none
// is free (and times out as With does), nests through Producer.Context, and
// returns the errors With would, leaving every slot in the pool.
func TestPoolSendIsAWith(t *testing.T) {
	p := newOffline(t, 1, 5*time.Second)
	m := &Message{Topic: "events", Payload: []byte("x")}
	ctx := ctxTimeout(t, 30*time.Second)

	// Nested: the owner's own producer on a pool of 1, no deadlock, in one
	// call and on the With path (a header).
	err := p.With(ctx, func(pr *Producer) error {
		if err := p.Send(pr.Context(), m); err != nil {
			return err
		}
		return p.Send(pr.Context(), &Message{Topic: "events", Headers: []Header{{Key: "h"}}})
	})
	if err != nil {
		t.Fatalf("nested Send: %v", err)
	}

	// Busy: another goroutine holds the only producer; Send waits as With
	// does, up to its context's deadline.
	release, done := holdOne(ctx, p)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err = p.Send(short, m)
	cancel()
	if !errors.Is(err, ErrPoolTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send on a busy pool: want a timeout, got %v", err)
	}
	sent := make(chan error, 1)
	go func() { sent <- p.Send(ctx, m) }()
	eventually(t, "a Send waiting for the producer", func() bool {
		s, _ := p.Stats()
		return s.Waiting == 1
	})
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("Send once the producer came back: %v", err)
	}

	// Errors, each with the producer back.
	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	if err := p.Send(cancelled, m); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	if err := p.Send(ctx, &Message{Payload: []byte("no topic")}); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("no topic: %v", err)
	}
	if err := p.ProduceTagged(ctx, m, nil, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil queue: %v", err)
	}
	q, err := NewReportQueue()
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := p.ProduceTagged(ctx, m, q, 1); !isCode(err, ResultStaleHandle) {
		t.Fatalf("closed queue: %v", err)
	}
	if s, err := p.Stats(); err != nil || s.InUse != 0 || s.Available() != 1 {
		t.Fatalf("stats %+v %v", s, err)
	}
	if _, err := p.Shutdown(false); err != nil {
		t.Fatal(err)
	}
	if err := p.Send(ctx, m); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("closed pool: %v", err)
	}
}

// Pool.ProduceAsync is the With it stands for, with a Delivery: its report
// comes through Wait (in one cgo call and on the With path), it nests
// through Producer.Context, waits for a producer when none is free (and
// times out as With does), and on an error returns no Delivery, leaving
// every slot in the pool.
func TestPoolProduceAsyncIsAWith(t *testing.T) {
	p := newOffline(t, 1, 5*time.Second)
	m := &Message{Topic: "events", Key: []byte("k"), Payload: []byte("x")}
	ctx := ctxTimeout(t, 30*time.Second)

	// One call (no header) and the With path (a header), nested on a
	// pool of 1 through the owner's context, and not nested.
	var ds []*Delivery
	err := p.With(ctx, func(pr *Producer) error {
		for _, msg := range []*Message{m, {Topic: "other", Headers: []Header{{Key: "h"}}}} {
			d, err := p.ProduceAsync(pr.Context(), msg)
			if err != nil {
				return err
			}
			ds = append(ds, d)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("nested ProduceAsync: %v", err)
	}
	d, err := p.ProduceAsync(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	ds = append(ds, d)
	for i, d := range ds {
		if err := d.Wait(ctx); err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		want := []string{"events", "other", "events"}[i]
		if r := d.Report(); r.Topic != want || r.Err != nil || d.Count() != 1 {
			t.Fatalf("delivery %d: report %+v, count %d", i, r, d.Count())
		}
	}

	// Busy: another goroutine holds the only producer; ProduceAsync waits
	// as With does, up to its context's deadline.
	release, done := holdOne(ctx, p)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	d, err = p.ProduceAsync(short, m)
	cancel()
	if d != nil || (!errors.Is(err, ErrPoolTimeout) && !errors.Is(err, context.DeadlineExceeded)) {
		t.Fatalf("ProduceAsync on a busy pool: want a timeout and no Delivery, got %v %v", d, err)
	}
	type result struct {
		d   *Delivery
		err error
	}
	sent := make(chan result, 1)
	go func() {
		d, err := p.ProduceAsync(ctx, m)
		sent <- result{d, err}
	}()
	eventually(t, "a ProduceAsync waiting for the producer", func() bool {
		s, _ := p.Stats()
		return s.Waiting == 1
	})
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r := <-sent
	if r.err != nil || r.d == nil {
		t.Fatalf("ProduceAsync once the producer came back: %v %v", r.d, r.err)
	}
	if err := r.d.Wait(ctx); err != nil {
		t.Fatal(err)
	}

	// Errors: no Delivery, the producer back.
	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	if d, err := p.ProduceAsync(cancelled, m); d != nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v %v", d, err)
	}
	for _, bad := range []*Message{{Payload: []byte("no topic")}, {Topic: "bad topic!"}, nil} {
		if d, err := p.ProduceAsync(ctx, bad); d != nil || !errors.Is(err, ErrInvalidMessage) {
			t.Fatalf("message %+v: want ErrInvalidMessage and no Delivery, got %v %v", bad, d, err)
		}
	}
	if s, err := p.Stats(); err != nil || s.InUse != 0 || s.Available() != 1 {
		t.Fatalf("stats %+v %v", s, err)
	}
	if _, err := p.Shutdown(false); err != nil {
		t.Fatal(err)
	}
	if d, err := p.ProduceAsync(ctx, m); d != nil || !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("closed pool: %v %v", d, err)
	}
}

// holdOne checks a producer of p out on a goroutine of its own and keeps
// it until release is closed; done gets that With's error.
func holdOne(ctx context.Context, p *Pool) (release chan struct{}, done chan error) {
	held := make(chan struct{})
	release, done = make(chan struct{}), make(chan error, 1)
	go func() {
		done <- p.With(ctx, func(*Producer) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	return release, done
}
