package wdpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// 64 goroutines through a pool of 4: no two hold the same slot at once.
func TestNoTwoGoroutinesShareASlot(t *testing.T) {
	p := newOffline(t, 4, 30*time.Second)
	var held [4]atomic.Int32
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				err := p.With(context.Background(), func(pr *Producer) error {
					info, err := pr.Info()
					if err != nil {
						return err
					}
					if !held[info.Index].CompareAndSwap(0, 1) {
						return errors.New("slot shared by two goroutines")
					}
					defer held[info.Index].Store(0)
					return pr.Send(&Message{Topic: "t", Payload: []byte("x")})
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// The context's deadline, shorter than the pool's timeout, bounds the wait.
func TestContextDeadlineBoundsCheckout(t *testing.T) {
	p := newOffline(t, 1, 10*time.Second)
	err := p.With(context.Background(), func(*Producer) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := p.With(ctx, func(*Producer) error { return nil })
		if !errors.Is(err, ErrPoolTimeout) {
			return err
		}
		if waited := time.Since(start); waited > 5*time.Second {
			t.Errorf("waited %v: the pool's timeout, not the context's deadline", waited)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Wait and Close on one Delivery from several goroutines: freed once, no race.
func TestDeliveryWaitAndCloseConcurrently(t *testing.T) {
	p := newOffline(t, 1, time.Second)
	ctx := ctxTimeout(t, 10*time.Second)
	for i := 0; i < 50; i++ {
		var d *Delivery
		if err := p.With(ctx, func(pr *Producer) error {
			var err error
			d, err = pr.ProduceAsync(&Message{Topic: "t", Payload: []byte("x")})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for j := 0; j < 4; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if j%2 == 0 {
					d.Close()
				} else if err := d.Wait(ctx); err != nil && !errors.Is(err, ErrStaleHandle) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	if n := liveDeliveries(); n != 0 {
		t.Fatalf("%d delivery handles live", n)
	}
}
