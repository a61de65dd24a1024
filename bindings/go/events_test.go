package wdpool

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Errors born on librdkafka's threads reach a subscriber through the
// package's drain goroutine, never from a library thread.
func TestQueuedErrorEventsAreDrained(t *testing.T) {
	cluster, err := NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	var errorsSeen atomic.Int64
	unsub, err := Subscribe(func(e Event) {
		if e.Kind == EventError && e.Message != "" {
			errorsSeen.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	p, err := New(&Options{Size: 1}, func(c *Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": cluster.BootstrapServers(),
			"reconnect.backoff.ms": "10", "reconnect.backoff.max.ms": "50"})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(true)
	ctx := ctxTimeout(t, 30*time.Second)
	err = p.With(ctx, func(pr *Producer) error {
		if _, err := pr.ProduceSync(ctx, &Message{Topic: "up", Payload: []byte("x")}); err != nil {
			return err
		}
		return cluster.SetBrokerUp(1, false)
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "an error event from librdkafka", func() bool { return errorsSeen.Load() > 0 })
	cluster.SetBrokerUp(1, true)
}

// A subscriber may unsubscribe itself; the drainer stops with the last
// subscription, and the finalizer deletes the handle exactly once.
func TestUnsubscribeFromInsideSubscriber(t *testing.T) {
	before := liveHandles()
	var unsub func()
	var once sync.Once
	got := make(chan struct{})
	var err error
	var mu sync.Mutex
	mu.Lock()
	unsub, err = Subscribe(func(e Event) {
		if e.Kind == EventCreated {
			mu.Lock()
			u := unsub
			mu.Unlock()
			u()
			once.Do(func() { close(got) })
		}
	})
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	p := newOffline(t, 1, time.Second)
	<-got
	p.With(context.Background(), func(*Producer) error { return nil })
	eventually(t, "the subscription's handle to be deleted", func() bool { return liveHandles() == before })
	eventually(t, "the drainer to stop", func() bool {
		drainer.Lock()
		defer drainer.Unlock()
		if drainer.subs != 0 {
			return false
		}
		select {
		case <-drainer.done:
			return true
		default:
			return false
		}
	})
}

// A second Setup closes the previous global pool (its shutdown event fires
// once) and installs the new one.
func TestSetupTwiceClosesThePrevious(t *testing.T) {
	var shutdowns sync.Map
	unsub, err := Subscribe(func(e Event) {
		if e.Kind == EventShutdown && e.Global {
			n, _ := shutdowns.LoadOrStore(e.PoolID, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	if err := Setup(&Options{Size: 1}, offline); err != nil {
		t.Fatal(err)
	}
	if err := Setup(&Options{Size: 3}, offline); err != nil {
		t.Fatal(err)
	}
	s2, err := GlobalStats()
	if err != nil || s2.Size != 3 {
		t.Fatalf("%+v %v", s2, err)
	}
	count := 0
	shutdowns.Range(func(_, v any) bool {
		if v.(*atomic.Int64).Load() != 1 {
			t.Errorf("a shutdown fired %d times", v.(*atomic.Int64).Load())
		}
		count++
		return true
	})
	if count < 1 {
		t.Fatal("the first global pool was not shut down")
	}
	Close()
}

// A subscriber that panics or calls runtime.Goexit ends only its own
// goroutine: the call that caused the event returns normally.
func TestSubscriberPanicAndGoexitAreContained(t *testing.T) {
	var calls atomic.Int64
	unsub, err := Subscribe(func(e Event) {
		if e.Kind != EventCreated {
			return
		}
		if calls.Add(1)%2 == 0 {
			panic("subscriber panic (expected in this test)")
		}
		runtime.Goexit()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	for i := 0; i < 4; i++ {
		p, err := New(&Options{Size: 1}, offline)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.With(context.Background(), func(*Producer) error { return nil }); err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
	if calls.Load() < 4 {
		t.Fatalf("%d calls", calls.Load())
	}
}
