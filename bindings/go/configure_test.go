package wdpool

import (
	"errors"
	"runtime"
	"testing"
	"time"
)

// runtime.Goexit (t.Fatal) in a configure function ends the goroutine that
// called New once wdpool's call has returned normally; nothing is left
// locked or leaked, and the Config kept past its function is stale.
func TestConfigureGoexitAndStaleConfig(t *testing.T) {
	before := liveHandles()
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(&Options{Size: 2}, func(c *Config, i int) error {
			c.SetDeliver(false)
			runtime.Goexit()
			return nil
		})
		t.Error("Goexit did not end the goroutine that called New")
	}()
	<-done
	if liveHandles() != before {
		t.Fatalf("handles: %d, want %d", liveHandles(), before)
	}
	var kept *Config
	p, err := New(&Options{Size: 1, Timeout: time.Second}, func(c *Config, i int) error {
		kept = c
		return c.SetDeliver(false)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := kept.SetKafka("acks", "all"); !errors.Is(err, ErrStaleHandle) {
		t.Fatalf("want ErrStaleHandle, got %v", err)
	}
	// A setter's error reaches the function at once, and fails New even
	// when the function ignores it.
	var seen error
	_, err = New(&Options{Size: 1}, func(c *Config, i int) error {
		seen = c.SetKafka("acks", "not-a-number")
		return nil
	})
	if !errors.Is(seen, ErrInvalidConfig) || !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("setter %v, New %v", seen, err)
	}
}
