package wdpool_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strconv"
	"strings"
	"time"

	wdpool "github.com/wdpool/wdpool-go"
)

// The seed's "High-Throughput Event Publishing": a global pool set up once,
// events published asynchronously from anywhere. deliver=false keeps the
// example offline; in production, set bootstrap.servers instead.
func Example_highThroughputPublishing() {
	err := wdpool.Setup(&wdpool.Options{Size: 20, Timeout: 10 * time.Second}, func(c *wdpool.Config, index int) error {
		return c.SetDeliver(false) // c.SetKafka("bootstrap.servers", "localhost:9092")
	})
	if err != nil {
		log.Fatal(err)
	}
	defer wdpool.Close()

	publish := func(ctx context.Context, eventType string, data any) (*wdpool.Delivery, error) {
		payload, _ := json.Marshal(data)
		var d *wdpool.Delivery
		err := wdpool.With(ctx, func(p *wdpool.Producer) error {
			var err error
			d, err = p.ProduceAsync(&wdpool.Message{
				Topic:   "events." + eventType,
				Payload: payload,
				Headers: []wdpool.Header{{Key: "timestamp", Value: []byte(strconv.FormatInt(time.Now().Unix(), 10))}},
			})
			return err
		})
		return d, err
	}

	ctx := context.Background()
	d1, _ := publish(ctx, "user_created", map[string]any{"id": 123, "name": "Alice"})
	d2, _ := publish(ctx, "order_placed", map[string]any{"order_id": 456, "amount": 99.99})
	for _, d := range []*wdpool.Delivery{d1, d2} {
		if err := d.Wait(ctx); err != nil {
			log.Fatal(err)
		}
		fmt.Println("delivered to", d.Report().Topic)
	}
	// Output:
	// delivered to events.user_created
	// delivered to events.order_placed
}

// High throughput without a Delivery per message: every report comes, with
// its tag, into one ReportQueue that a goroutine drains in batches.
func ExampleReportQueue() {
	pool, err := wdpool.New(&wdpool.Options{Size: 2, Timeout: 5 * time.Second}, func(c *wdpool.Config, _ int) error {
		return c.SetDeliver(false) // c.SetKafka("bootstrap.servers", "localhost:9092")
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	reports, err := wdpool.NewReportQueue()
	if err != nil {
		log.Fatal(err)
	}
	defer reports.Close()

	ctx := context.Background()
	const n = 1000
	for i := range n {
		err := pool.With(ctx, func(p *wdpool.Producer) error {
			return p.ProduceTagged(&wdpool.Message{Topic: "clicks", Payload: []byte(strconv.Itoa(i))}, reports, uint64(i))
		})
		if err != nil {
			log.Fatal(err) // not sent: no report will come for it
		}
	}

	delivered, failed := 0, 0
	buf := make([]wdpool.TaggedReport, 256)
	deadline, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for delivered+failed < n {
		k, err := reports.Take(deadline, buf)
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range buf[:k] {
			if r.Err != nil {
				failed++ // r.Tag says which message
			} else {
				delivered++
			}
		}
	}
	fmt.Println(delivered, "delivered,", failed, "failed")
	// Output: 1000 delivered, 0 failed
}

// Pool.Send: one message, fire and forget, with the checkout and checkin
// around it (one cgo call when a producer is free; otherwise it waits as
// With does). For a burst, check a producer out once with With.
func ExamplePool_Send() {
	pool, err := wdpool.New(&wdpool.Options{Size: 2, Timeout: 5 * time.Second}, func(c *wdpool.Config, _ int) error {
		return c.SetDeliver(false) // c.SetKafka("bootstrap.servers", "localhost:9092")
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	for i := range 3 {
		msg := &wdpool.Message{Topic: "page_views", Key: []byte("user-42"), Payload: []byte(strconv.Itoa(i))}
		if err := pool.Send(ctx, msg); err != nil {
			log.Fatal(err) // not sent
		}
	}
	stats, err := pool.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("producers in use:", stats.InUse)
	// Output: producers in use: 0
}

// Pool.ProduceAsync: one message with its Delivery, the checkout and
// checkin around it as Pool.Send; Wait on the Delivery for the report.
func ExamplePool_ProduceAsync() {
	pool, err := wdpool.New(&wdpool.Options{Size: 2, Timeout: 5 * time.Second}, func(c *wdpool.Config, _ int) error {
		return c.SetDeliver(false) // c.SetKafka("bootstrap.servers", "localhost:9092")
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	var pending []*wdpool.Delivery
	for i := range 3 {
		d, err := pool.ProduceAsync(ctx, &wdpool.Message{Topic: "orders", Payload: []byte(strconv.Itoa(i))})
		if err != nil {
			log.Fatal(err) // not sent
		}
		pending = append(pending, d)
	}
	for _, d := range pending {
		if err := d.Wait(ctx); err != nil {
			log.Fatal(err) // not delivered
		}
		fmt.Println("delivered to", d.Report().Topic)
	}
	// Output:
	// delivered to orders
	// delivered to orders
	// delivered to orders
}

// The seed's "Background Job Integration": a job publishes a notification
// synchronously and tells a pool timeout from other failures.
func Example_backgroundJobNotification() {
	pool, err := wdpool.New(&wdpool.Options{Size: 5, Timeout: 5 * time.Second}, func(c *wdpool.Config, _ int) error {
		return c.SetDeliver(false)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	notify := func(ctx context.Context, userID int, message string) error {
		payload, _ := json.Marshal(map[string]any{"user_id": userID, "message": message, "timestamp": time.Now().Format(time.RFC3339)})
		err := pool.With(ctx, func(p *wdpool.Producer) error {
			_, err := p.ProduceSync(ctx, &wdpool.Message{Topic: "notifications", Payload: payload})
			return err
		})
		switch {
		case errors.Is(err, wdpool.ErrPoolTimeout):
			return fmt.Errorf("no producer available from pool: %w", err) // retry later
		case err != nil:
			return fmt.Errorf("failed to publish message: %w", err)
		}
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("notified:", notify(ctx, 42, "your order shipped") == nil)
	// Output:
	// notified: true
}

// The seed's "Transactional Order Processing": every slot gets its own
// transactional.id from its zero-based index; the orders of one call are
// committed together, or not at all. Runs on librdkafka's mock cluster.
func Example_transactionalOrderProcessing() {
	cluster, err := wdpool.NewMockCluster(1)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	pool, err := wdpool.New(&wdpool.Options{Size: 5}, func(c *wdpool.Config, index int) error {
		return c.SetKafkaMap(map[string]string{
			"bootstrap.servers": cluster.BootstrapServers(),
			"transactional.id":  fmt.Sprintf("my-app-%d", index),
		})
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	type order struct {
		ID     int     `json:"id"`
		Amount float64 `json:"amount"`
	}
	process := func(ctx context.Context, orders []order) error {
		return pool.Transaction(ctx, func(p *wdpool.Producer) error {
			for _, o := range orders {
				payload, _ := json.Marshal(o)
				if o.Amount < 0 {
					return fmt.Errorf("order %d: negative amount", o.ID) // rolls back
				}
				if err := p.Send(&wdpool.Message{Topic: "processed_orders", Payload: payload, Key: []byte(strconv.Itoa(o.ID))}); err != nil {
					return err
				}
			}
			return nil // commits
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Println("committed:", process(ctx, []order{{1, 10}, {2, 20}}))
	fmt.Println("rolled back:", process(ctx, []order{{3, 30}, {4, -1}}))
	// Output:
	// committed: <nil>
	// rolled back: order 4: negative amount
}

// The seed's "Error Handling": no producer free within the timeout is
// ErrPoolTimeout, and its message says how long and how many were free.
func Example_handlingPoolTimeout() {
	pool, err := wdpool.New(&wdpool.Options{Size: 1, Timeout: 50 * time.Millisecond}, func(c *wdpool.Config, _ int) error {
		return c.SetDeliver(false)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	ctx := context.Background()
	pool.With(ctx, func(busy *wdpool.Producer) error {
		// Another owner (a fresh context) waits for the only producer.
		err := pool.With(ctx, func(*wdpool.Producer) error { return nil })
		if errors.Is(err, wdpool.ErrPoolTimeout) {
			fmt.Println("pool exhausted:", strings.Contains(err.Error(), "0/1 available"))
		}
		// The same owner (the producer's context) gets the same producer.
		err = pool.With(busy.Context(), func(*wdpool.Producer) error { return nil })
		fmt.Println("nested with the producer's context:", err)
		return nil
	})
	// Output:
	// pool exhausted: true
	// nested with the producer's context: <nil>
}
