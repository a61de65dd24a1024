// Package peerbench compares wdpool's Go binding with the Go producers a
// Go user would pick instead, on the same real broker and workload: 100-byte
// messages, acks=all, linger 5 ms, 4 goroutines, 2 producers. A module of
// its own so that the binding itself needs nothing but the standard library.
//
//	WDPOOL_KAFKA_BOOTSTRAP=127.0.0.1:9092 go test -bench . -benchtime 3s
package peerbench

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"
	wdpool "github.com/wdpool/wdpool-go"
)

var payload = make([]byte, 100)

func bootstrap(b *testing.B) string {
	s := os.Getenv("WDPOOL_KAFKA_BOOTSTRAP")
	if s == "" {
		b.Skip("needs WDPOOL_KAFKA_BOOTSTRAP")
	}
	return s
}

func topic(name string) string { return fmt.Sprintf("peerbench-%s-%d", name, time.Now().UnixNano()) }

func BenchmarkWdpoolSend(b *testing.B) {
	bs := bootstrap(b)
	t := topic("wdpool")
	pool, err := wdpool.New(&wdpool.Options{Size: 2, Timeout: 30 * time.Second}, func(c *wdpool.Config, _ int) error {
		return c.SetKafkaMap(map[string]string{"bootstrap.servers": bs, "acks": "all", "linger.ms": "5"})
	})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	for i := 0; i < 2; i++ { // creates the topic and both producers: not measured
		go pool.With(ctx, func(p *wdpool.Producer) error {
			_, err := p.ProduceSync(ctx, &wdpool.Message{Topic: t, Payload: payload})
			return err
		})
	}
	pool.With(ctx, func(p *wdpool.Producer) error {
		_, err := p.ProduceSync(ctx, &wdpool.Message{Topic: t, Payload: payload})
		return err
	})
	b.ResetTimer()
	b.SetBytes(100)
	b.SetParallelism(2) // 4 goroutines on 2 cores, through 2 producers
	b.RunParallel(func(pb *testing.PB) {
		pool.With(ctx, func(p *wdpool.Producer) error {
			for pb.Next() {
				if err := p.Send(&wdpool.Message{Topic: t, Payload: payload}); err != nil {
					b.Fatal(err)
				}
			}
			return p.Flush(ctx)
		})
	})
}

func BenchmarkConfluentProduce(b *testing.B) {
	bs := bootstrap(b)
	t := topic("confluent")
	var producers [2]*kafka.Producer
	for i := range producers {
		p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bs, "acks": "all", "linger.ms": 5})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			for range p.Events() { // delivery reports
			}
		}()
		producers[i] = p
		defer p.Close()
	}
	for _, p := range producers { // creates the topic, connects: not measured
		p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &t, Partition: kafka.PartitionAny}, Value: payload}, nil)
		p.Flush(30000)
	}
	var next atomic.Int64
	b.ResetTimer()
	b.SetBytes(100)
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		p := producers[next.Add(1)%2]
		for pb.Next() {
			for {
				err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &t, Partition: kafka.PartitionAny}, Value: payload}, nil)
				if err == nil {
					break
				}
				if e, ok := err.(kafka.Error); ok && e.Code() == kafka.ErrQueueFull {
					p.Flush(10)
					continue
				}
				b.Fatal(err)
			}
		}
		for p.Flush(1000) > 0 {
		}
	})
}

func BenchmarkFranzProduce(b *testing.B) {
	bs := bootstrap(b)
	t := topic("franz")
	var clients [2]*kgo.Client
	for i := range clients {
		c, err := kgo.NewClient(kgo.SeedBrokers(bs), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond),
			kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic(t))
		if err != nil {
			b.Fatal(err)
		}
		clients[i] = c
		defer c.Close()
	}
	var next atomic.Int64
	ctx := context.Background()
	for _, c := range clients { // creates the topic, connects: not measured
		if err := c.ProduceSync(ctx, &kgo.Record{Value: payload}).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	b.SetBytes(100)
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		c := clients[next.Add(1)%2]
		for pb.Next() {
			c.Produce(ctx, &kgo.Record{Value: payload}, nil)
		}
		if err := c.Flush(ctx); err != nil {
			b.Error(err)
		}
	})
}
