package wdpool

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"
)

// offline configures producers that never contact a broker.
func offline(c *Config, index int) error { return c.SetDeliver(false) }

func newOffline(t testing.TB, size int, timeout time.Duration) *Pool {
	t.Helper()
	p, err := New(&Options{Size: size, Timeout: timeout}, offline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(true) })
	return p
}

var mock *MockCluster

func TestMain(m *testing.M) {
	var err error
	mock, err = NewMockCluster(1)
	if err != nil {
		panic(err)
	}
	code := m.Run()
	mock.Close()
	os.Exit(code)
}

// onMock configures producers for the shared mock cluster.
func onMock(c *Config, index int) error {
	return c.SetKafkaMap(map[string]string{"bootstrap.servers": mock.BootstrapServers(), "linger.ms": "0"})
}

// eventually waits for cond with a deadline, never a bare sleep.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// liveHandles is how many cgo.Handles the package holds now.
func liveHandles() int64 { return handlesLive.Load() }

// newQueue is a ReportQueue closed at the test's end.
func newQueue(t testing.TB) *ReportQueue {
	t.Helper()
	q, err := NewReportQueue()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

// spread calls fn(g, i) for i from 0 to each-1 on each of goroutines
// goroutines (g is the goroutine's index); a goroutine stops at the first
// false. The returned func waits for all of them.
func spread(goroutines, each int, fn func(g, i int) bool) (wait func()) {
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if !fn(g, i) {
					return
				}
			}
		}()
	}
	return wg.Wait
}
