// wdpool's Go binding (bindings/go, through the replace directive of
// go.mod; cgo finds the release library through pkg-config) on row 1's
// workload, and an empty With against a plain buffered-channel pool.

package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	wdpool "github.com/wdpool/wdpool-go"
)

// nest checks out n producers at once (n owners, each With nested in the
// previous one with a fresh context) and calls fn with all of them.
func nest(pool *wdpool.Pool, n int, got []*wdpool.Producer, fn func([]*wdpool.Producer) error) error {
	if n == 0 {
		return fn(got)
	}
	return pool.With(context.Background(), func(p *wdpool.Producer) error {
		return nest(pool, n-1, append(got, p), fn)
	})
}

// eachAtOnce runs fn on every producer, in parallel.
func eachAtOnce(ps []*wdpool.Producer, fn func(*wdpool.Producer) error) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(p)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// poolTimeout is the wdpool pool's checkout timeout (-pool-timeout).
var poolTimeout = time.Minute

func newWdpool(size int, configure wdpool.ConfigureFunc) *wdpool.Pool {
	pool, err := wdpool.New(&wdpool.Options{Size: size, Timeout: poolTimeout}, configure)
	if err != nil {
		die("wdpool New: %v", err)
	}
	return pool
}

// loadedLibrary is the libwdpool.so this process mapped.
func loadedLibrary() string {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(maps), "\n") {
		if i := strings.Index(line, "/"); i >= 0 && strings.Contains(line[i:], "libwdpool.so") {
			return line[i:]
		}
	}
	return "?"
}

// runWdpool: -mode send is a With per message (per perWith messages) and
// a fire-and-forget Send inside (row 1a through Go); -mode async a With
// per message (per perWith) and ProduceAsync inside, each goroutine
// waiting for its Deliveries, the oldest first, once it has window of them
// pending, and counting their reports; -mode tagged a With per message
// (per perWith) and ProduceTagged inside, every report taken from one
// ReportQueue by one goroutine. The run ends when every producer is
// flushed (send), every Delivery waited on (async) or every report taken
// (tagged). -mode poolsend and pooltagged are send and tagged through
// Pool.Send and Pool.ProduceTagged (the With is inside: one cgo call when
// a producer is free), a message at a time (perWith is ignored); -mode
// poolasync is async through Pool.ProduceAsync, a message at a time.
func runWdpool(cfg config, c *counts, mode string, window, perWith int) result {
	switch mode {
	case "send", "async", "tagged":
	case "poolsend", "pooltagged", "poolasync":
		perWith = 1
	default:
		die("-mode send|async|tagged|poolsend|pooltagged|poolasync")
	}
	pool := newWdpool(cfg.producers, func(conf *wdpool.Config, _ int) error {
		if err := conf.SetKafka("bootstrap.servers", cfg.bootstrap); err != nil {
			return err
		}
		for _, kv := range cfg.sets {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("-set %s: not key=value", kv)
			}
			if err := conf.SetKafka(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	body := payload()
	msg := func() *wdpool.Message { return &wdpool.Message{Topic: cfg.topic, Payload: body} }
	ctx := context.Background()
	err := nest(pool, cfg.producers, nil, func(ps []*wdpool.Producer) error {
		return eachAtOnce(ps, func(p *wdpool.Producer) error {
			_, err := p.ProduceSync(ctx, msg())
			c.report(err)
			return err
		})
	})
	if err != nil {
		die("wdpool warm-up: %v", err)
	}
	warmup := int64(cfg.producers)

	// -mode tagged: every report comes in one queue, taken by one
	// goroutine (confluent-kafka-go's row drains its Events channels so).
	var queue *wdpool.ReportQueue
	var taken sync.WaitGroup
	stopTaking, stop := context.WithCancel(ctx)
	defer stop()
	tagged := mode == "tagged" || mode == "pooltagged"
	if tagged {
		if queue, err = wdpool.NewReportQueue(); err != nil {
			die("wdpool NewReportQueue: %v", err)
		}
		taken.Add(1)
		go func() {
			defer taken.Done()
			buf := make([]wdpool.TaggedReport, 1024)
			for {
				n, err := queue.Take(stopTaking, buf)
				if err != nil {
					if stopTaking.Err() == nil {
						die("wdpool Take: %v", err)
					}
					return
				}
				for _, r := range buf[:n] {
					c.report(r.Err)
				}
			}
		}()
	}

	cpu0 := cpuSeconds()
	t0 := time.Now()
	var wg sync.WaitGroup
	for t := 0; t < cfg.threads; t++ {
		wg.Add(1)
		go func(n int64) {
			defer wg.Done()
			var pending []*wdpool.Delivery
			for i := int64(0); i < n; {
				k := min(int64(perWith), n-i)
				if mode == "poolsend" || mode == "pooltagged" || mode == "poolasync" {
					var err error
					switch mode {
					case "poolsend":
						err = pool.Send(ctx, msg())
					case "pooltagged":
						err = pool.ProduceTagged(ctx, msg(), queue, uint64(i))
					default:
						var d *wdpool.Delivery
						if d, err = pool.ProduceAsync(ctx, msg()); err == nil {
							pending = append(pending, d)
						}
					}
					if err != nil {
						die("wdpool Pool.%s: %v", mode, err)
					}
					i++
					for len(pending) >= window {
						c.report(pending[0].Wait(ctx))
						pending = pending[1:]
					}
					continue
				}
				err := pool.With(ctx, func(p *wdpool.Producer) error {
					for j := int64(0); j < k; j++ {
						if mode == "send" {
							if err := p.Send(msg()); err != nil {
								return err
							}
							continue
						}
						if mode == "tagged" {
							if err := p.ProduceTagged(msg(), queue, uint64(i+j)); err != nil {
								return err
							}
							continue
						}
						d, err := p.ProduceAsync(msg())
						if err != nil {
							return err
						}
						pending = append(pending, d)
					}
					return nil
				})
				if err != nil {
					die("wdpool With: %v", err)
				}
				i += k
				for len(pending) >= window {
					c.report(pending[0].Wait(ctx))
					pending = pending[1:]
				}
			}
			for _, d := range pending {
				c.report(d.Wait(ctx))
			}
		}(share(cfg.messages, cfg.threads, t))
	}
	wg.Wait()
	sendS := time.Since(t0).Seconds()
	if tagged {
		c.waitFor(warmup+cfg.messages, 10*time.Minute)
		stop()
		taken.Wait()
		queue.Close()
	}
	if err := nest(pool, cfg.producers, nil, func(ps []*wdpool.Producer) error {
		return eachAtOnce(ps, func(p *wdpool.Producer) error { return p.Flush(ctx) })
	}); err != nil {
		die("wdpool Flush: %v", err)
	}
	elapsed := time.Since(t0).Seconds()
	cpu := cpuSeconds() - cpu0
	if err := pool.Close(); err != nil {
		die("wdpool Close: %v", err)
	}
	return result{warmup: warmup, elapsed: elapsed, sendS: sendS, cpu: cpu, noReports: mode == "send" || mode == "poolsend"}
}

// --------------------------------------------------------------- empty With

// chanPool: the plainest Go pool, a buffered channel of resources.
type chanPool struct{ ch chan *int }

func (c *chanPool) with(fn func(*int) error) error {
	x := <-c.ch
	defer func() { c.ch <- x }()
	return fn(x)
}

// benchWith: -client wdpool is an empty With on a pool of deliver=false
// producers (no broker), every producer created first; -client chan the
// same on a chanPool. ops operations in all, shared by the goroutines,
// after a warm-up of a tenth of them; wall_ns_per_op is wall time / ops.
func benchWith(client string, threads, size int, ops int64) {
	var op func() error
	var pool *wdpool.Pool
	switch client {
	case "wdpool":
		pool = newWdpool(size, func(c *wdpool.Config, _ int) error { return c.SetDeliver(false) })
		if err := nest(pool, size, nil, func([]*wdpool.Producer) error { return nil }); err != nil {
			die("wdpool warm-up: %v", err)
		}
		ctx := context.Background()
		empty := func(*wdpool.Producer) error { return nil }
		op = func() error { return pool.With(ctx, empty) }
	case "chan":
		c := &chanPool{ch: make(chan *int, size)}
		for i := 0; i < size; i++ {
			c.ch <- new(int)
		}
		empty := func(*int) error { return nil }
		op = func() error { return c.with(empty) }
	default:
		die("-bench with: -client wdpool|chan")
	}
	run := func(n int64) float64 {
		t0 := time.Now()
		var wg sync.WaitGroup
		for t := 0; t < threads; t++ {
			wg.Add(1)
			go func(n int64) {
				defer wg.Done()
				for i := int64(0); i < n; i++ {
					if err := op(); err != nil {
						die("%s With: %v", client, err)
					}
				}
			}(share(n, threads, t))
		}
		wg.Wait()
		return time.Since(t0).Seconds()
	}
	run(ops/10 + 1)
	elapsed := run(ops)
	lib := "-"
	if pool != nil {
		// Every With has returned: every producer must be back.
		if s, err := pool.Stats(); err != nil || s.InUse != 0 || s.Waiting != 0 {
			die("wdpool: producers not back after every With returned: %+v (%v)", s, err)
		}
		lib = loadedLibrary()
		if err := pool.Close(); err != nil {
			die("wdpool Close: %v", err)
		}
	}
	fmt.Printf("RESULT bench=with impl=%s lang=go threads=%d pool=%d ops=%d wall_ns_per_op=%.2f elapsed_s=%.6f lib=%s\n",
		client, threads, size, ops, elapsed/float64(ops)*1e9, elapsed, lib)
}
