package wdpool_test

// The Go runner of the conformance scenarios (tests/conformance/README.md):
// every tests/conformance/scenarios/*.json runs here through the package's
// public API, against a mock cluster of its own. Owners are goroutines:
// each runs its steps, and an open scope is its goroutine inside the
// function given to With / Transaction; a nested scope is given the
// enclosing producer's Context(), as the package's owner rule says.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	wdpool "github.com/wdpool/wdpool-go"
)

const scenarioDir = "../../tests/conformance/scenarios"

type step = map[string]any

// errBody is the body's own error ("fail"): it must come back unchanged.
var errBody = errors.New("the body failed on purpose")

// exitSignal is how a body leaves early (a panic the owner recovers).
type exitSignal struct{}

type reply struct {
	kind, message string
	kafkaCode     int32
	kafkaFlags    []string
	entered       bool
	slot          int
	reports       []wdpool.DeliveryReport
	info          *wdpool.ProducerInfo
}

func replyOf(err error) reply {
	var e *wdpool.Error
	switch {
	case err == nil:
		return reply{kind: "ok"}
	case errors.Is(err, errBody):
		return reply{kind: "app", message: err.Error()}
	case errors.As(err, &e):
		r := reply{kind: strings.ToLower(strings.TrimPrefix(e.Code.String(), "WDPOOL_")), message: e.Message, kafkaFlags: []string{}}
		var k *wdpool.KafkaError
		if errors.As(err, &k) {
			r.kafkaCode = k.Code
			for name, set := range map[string]bool{"retriable": k.Retriable(), "fatal": k.Fatal(), "txn_requires_abort": k.TxnRequiresAbort()} {
				if set {
					r.kafkaFlags = append(r.kafkaFlags, name)
				}
			}
		}
		return r
	default:
		return reply{kind: "go:" + fmt.Sprintf("%T", err), message: err.Error()}
	}
}

// An owner: a goroutine that runs the owner's steps.
type owner struct {
	run   *scenarioRun
	in    chan step
	out   chan reply
	depth int
	last  *wdpool.Producer
}

func newOwner(r *scenarioRun) *owner {
	o := &owner{run: r, in: make(chan step), out: make(chan reply)}
	go func() { o.serve(nil, context.Background(), <-o.in) }() // returns on "quit" only
	return o
}

func (o *owner) call(s step) reply {
	o.in <- s
	r := <-o.out
	switch s["op"] {
	case "with", "transaction":
		if r.entered {
			o.depth++
		}
	case "end":
		o.depth--
	}
	return r
}

// serve runs steps inside the current scope until an `end`, which it
// returns to the scope's function.
func (o *owner) serve(p *wdpool.Producer, ctx context.Context, s step) step {
	for {
		var r reply
		switch s["op"] {
		case "with", "transaction":
			r = o.open(ctx, s)
		case "end", "quit":
			return s
		default:
			if p == nil {
				p = o.last
			}
			r = o.run.act(s, p)
		}
		o.out <- r
		s = <-o.in
	}
}

// open runs a scope. Its reply is the `end` step's when the function ran
// (the function answered the open step itself), else the open's error.
func (o *owner) open(ctx context.Context, s step) (r reply) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(exitSignal); !ok {
				panic(v)
			}
			r = reply{kind: "exited"}
		}
	}()
	if ms, ok := s["timeout_ms"].(float64); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	fn := func(p *wdpool.Producer) error {
		o.last = p
		info, _ := p.Info()
		o.out <- reply{kind: "ok", entered: true, slot: info.Index}
		end := o.serve(p, p.Context(), <-o.in)
		switch end["how"] {
		case "fail":
			return errBody
		case "abort":
			return wdpool.ErrAbortTransaction
		case "exit":
			panic(exitSignal{})
		}
		return nil
	}
	name := str(s, "pool", "p")
	txn := s["op"] == "transaction"
	if o.run.global[name] {
		if txn {
			return replyOf(wdpool.Transaction(ctx, fn))
		}
		return replyOf(wdpool.With(ctx, fn))
	}
	pool := o.run.pools[name]
	if pool == nil {
		return reply{kind: "no pool " + name}
	}
	if txn {
		return replyOf(pool.Transaction(ctx, fn))
	}
	return replyOf(pool.With(ctx, fn))
}

type scenarioRun struct {
	t        *testing.T
	runID    string
	cluster  *wdpool.MockCluster
	pools    map[string]*wdpool.Pool
	global   map[string]bool
	ids      map[string]uint64
	owners   map[string]*owner
	where    string
	mu       sync.Mutex
	events   []wdpool.Event
	seen     int
	failures []string
}

func (r *scenarioRun) fail(format string, args ...any) {
	r.failures = append(r.failures, r.where+": "+fmt.Sprintf(format, args...))
}

func (r *scenarioRun) expand(s string, index int) string {
	s = strings.ReplaceAll(s, "{run}", r.runID)
	if index >= 0 {
		s = strings.ReplaceAll(s, "{index}", fmt.Sprint(index))
	}
	return s
}

func str(m map[string]any, key, fallback string) string {
	if v, ok := m[key].(string); ok {
		return v
	}
	return fallback
}

func obj(m map[string]any, key string) map[string]any {
	v, _ := m[key].(map[string]any)
	return v
}

func TestConformance(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(scenarioDir, "*.json"))
	if err != nil || len(files) < 30 {
		t.Fatalf("expected at least 30 scenarios in %s, found %d (%v)", scenarioDir, len(files), err)
	}
	sort.Strings(files)
	for i, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			runScenario(t, file, i)
		})
	}
}

func runScenario(t *testing.T, file string, number int) {
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Steps []step `json:"steps"`
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	r := &scenarioRun{t: t, runID: fmt.Sprintf("go-%d-%d", os.Getpid(), number), pools: map[string]*wdpool.Pool{},
		global: map[string]bool{}, ids: map[string]uint64{}, owners: map[string]*owner{}}
	r.cluster, err = wdpool.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("WDPOOL_BROKERS", r.cluster.BootstrapServers())
	unsubscribe, err := wdpool.Subscribe(func(ev wdpool.Event) {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range doc.Steps {
		r.where = fmt.Sprintf("step %d (%v)", i+1, s["op"])
		r.perform(s)
	}
	r.where = "teardown"
	r.teardown()
	unsubscribe()
	if len(r.failures) > 0 {
		t.Errorf("%s:\n  %s", filepath.Base(file), strings.Join(r.failures, "\n  "))
	}
}

func (r *scenarioRun) perform(s step) {
	expect := obj(s, "expect")
	switch s["op"] {
	case "pool":
		r.createPool(s, expect)
	case "with", "transaction", "end", "produce", "flush", "info":
		r.ownerStep(s, expect)
	case "close":
		name, force := str(s, "pool", "p"), s["force"] == true
		var rep wdpool.CloseReport
		var err error
		if r.global[name] {
			rep, err = wdpool.Shutdown(force)
		} else {
			rep, err = r.pools[name].Shutdown(force)
		}
		r.checkOutcome(expect, replyOf(err))
		r.checkFields(expect, map[string]any{"closed": rep.Closed, "undelivered": rep.Undelivered, "in_use": rep.InUse})
	case "reload":
		name := str(s, "pool", "p")
		if r.global[name] {
			r.checkOutcome(expect, replyOf(wdpool.Reload()))
		} else {
			r.checkOutcome(expect, replyOf(r.pools[name].Reload()))
		}
	case "stats":
		name := str(s, "pool", "p")
		var st wdpool.Stats
		var err error
		if r.global[name] {
			st, err = wdpool.GlobalStats()
		} else {
			st, err = r.pools[name].Stats()
		}
		r.checkOutcome(expect, replyOf(err))
		if err == nil {
			r.checkFields(expect, map[string]any{"size": st.Size, "created": st.Created, "idle": st.Idle, "in_use": st.InUse,
				"creating": st.Creating, "waiting": st.Waiting, "checkout_timeouts": st.CheckoutTimeouts,
				"creations": st.Creations, "replaced": st.Replaced, "closed": st.Closed})
		}
	case "events":
		want, _ := s["expect"].([]any)
		r.checkEvents(want)
	case "broker":
		var err error
		if up, ok := s["up"].(bool); ok {
			err = r.cluster.SetBrokerUp(1, up)
		}
		if ms, ok := s["rtt_ms"].(float64); ok && err == nil {
			err = r.cluster.SetRTT(1, int(ms))
		}
		r.checkOutcome(expect, replyOf(err))
	case "topic":
		partitions := 1
		if n, ok := s["partitions"].(float64); ok {
			partitions = int(n)
		}
		r.checkOutcome(expect, replyOf(r.cluster.CreateTopic(r.expand(str(s, "topic", ""), -1), partitions)))
	case "active":
		r.checkFields(expect, map[string]any{"active": wdpool.Active()})
	case "inject":
		var codes []int32
		list, _ := s["errors"].([]any)
		for _, c := range list {
			codes = append(codes, int32(c.(float64)))
		}
		key, _ := s["api_key"].(float64)
		r.checkOutcome(expect, replyOf(r.cluster.PushRequestErrors(int16(key), codes...)))
	default:
		r.fail("unknown op")
	}
}

func (r *scenarioRun) createPool(s step, expect map[string]any) {
	name := str(s, "name", "p")
	opts := &wdpool.Options{Size: 5, Timeout: 5 * time.Second}
	if n, ok := s["size"].(float64); ok {
		opts.Size = int(n)
	}
	if n, ok := s["timeout_ms"].(float64); ok {
		opts.Timeout = time.Duration(n) * time.Millisecond
	}
	var indexes []int
	var configure wdpool.ConfigureFunc
	if config := obj(s, "config"); config != nil {
		configure = func(c *wdpool.Config, index int) error {
			indexes = append(indexes, index)
			if config["fail"] == true {
				return errBody
			}
			if err := c.SetKafka("bootstrap.servers", r.cluster.BootstrapServers()); err != nil {
				return err
			}
			if err := c.SetKafka("linger.ms", "0"); err != nil {
				return err
			}
			for k, v := range obj(config, "kafka") {
				if err := c.SetKafka(k, r.expand(fmt.Sprint(v), index)); err != nil {
					return err
				}
			}
			if tid, ok := config["transactional_id"].(string); ok {
				if err := c.SetKafka("transactional.id", r.expand(tid, index)); err != nil {
					return err
				}
			}
			if id, ok := config["id"].(string); ok {
				if err := c.SetID(r.expand(id, index)); err != nil {
					return err
				}
			}
			if d, ok := config["deliver"].(bool); ok {
				if err := c.SetDeliver(d); err != nil {
					return err
				}
			}
			if n, ok := config["max_payload_size"].(float64); ok {
				if err := c.SetMaxPayloadSize(int(n)); err != nil {
					return err
				}
			}
			if n, ok := config["max_wait_timeout_ms"].(float64); ok {
				return c.SetMaxWaitTimeout(time.Duration(n) * time.Millisecond)
			}
			return nil
		}
	}
	var err error
	if s["global"] == true {
		if err = wdpool.Setup(opts, configure); err == nil {
			r.global[name] = true
			r.ids[name] = r.lastGlobalSetupID()
		}
	} else {
		var p *wdpool.Pool
		if p, err = wdpool.New(opts, configure); err == nil {
			r.pools[name] = p
			r.ids[name] = p.ID()
		}
	}
	r.checkOutcome(expect, replyOf(err))
	if want, ok := expect["configured"].([]any); ok {
		got := make([]any, len(indexes))
		for i, n := range indexes {
			got[i] = float64(n)
		}
		if !reflect.DeepEqual(got, want) {
			r.fail("configured: got %v, expected %v", indexes, want)
		}
	}
}

// The global pool's id, from its setup event (the package has no accessor).
func (r *scenarioRun) lastGlobalSetupID() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Kind == wdpool.EventSetup && r.events[i].Global {
			return r.events[i].PoolID
		}
	}
	r.fail("no connection_pool.setup event after Setup")
	return 0
}

func (r *scenarioRun) ownerStep(s step, expect map[string]any) {
	name := str(s, "owner", "A")
	o := r.owners[name]
	if o == nil {
		o = newOwner(r)
		r.owners[name] = o
	}
	if s["op"] == "end" && o.depth == 0 {
		r.fail("the owner has no open scope")
		return
	}
	rep := o.call(s)
	r.checkOutcome(expect, rep)
	if rep.kind != "ok" {
		return
	}
	if s["op"] == "with" || s["op"] == "transaction" {
		r.checkFields(expect, map[string]any{"slot": rep.slot})
	}
	if i := rep.info; i != nil {
		r.checkFields(expect, map[string]any{"slot": i.Index, "transactional": i.Transactional,
			"in_transaction": i.InTransaction, "depth": i.Depth, "rollback_only": i.RollbackOnly})
	}
	if rep.reports != nil {
		r.checkReports(expect, rep.reports)
	}
}

// act runs a step on the owner's producer, on the owner's goroutine.
func (r *scenarioRun) act(s step, p *wdpool.Producer) reply {
	if p == nil {
		return reply{kind: "no producer"}
	}
	ctx := p.Context()
	switch s["op"] {
	case "info":
		info, err := p.Info()
		rep := replyOf(err)
		rep.info = &info
		return rep
	case "flush":
		if ms, ok := s["timeout_ms"].(float64); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
			defer cancel()
		}
		return replyOf(p.Flush(ctx))
	case "produce":
		return r.produce(ctx, s, p)
	}
	return reply{kind: "unknown op"}
}

func (r *scenarioRun) message(m map[string]any) *wdpool.Message {
	msg := &wdpool.Message{Topic: r.expand(str(m, "topic", ""), -1)}
	if n, ok := m["payload_size"].(float64); ok {
		msg.Payload = bytes.Repeat([]byte("x"), int(n))
	} else if v, ok := m["payload"].(string); ok {
		msg.Payload = []byte(v)
	}
	if v, ok := m["key"].(string); ok {
		msg.Key = []byte(v)
	}
	if v, ok := m["partition_key"].(string); ok {
		msg.PartitionKey = []byte(v)
	}
	if n, ok := m["partition"].(float64); ok {
		msg.Partition = wdpool.Partition(int32(n))
	}
	for k, v := range obj(m, "headers") {
		msg.Headers = append(msg.Headers, wdpool.Header{Key: k, Value: []byte(fmt.Sprint(v))})
	}
	return msg
}

func (r *scenarioRun) produce(ctx context.Context, s step, p *wdpool.Producer) reply {
	var msgs []*wdpool.Message
	if list, ok := s["messages"].([]any); ok {
		for _, m := range list {
			msgs = append(msgs, r.message(m.(map[string]any)))
		}
	} else {
		count := 1
		if n, ok := s["count"].(float64); ok {
			count = int(n)
		}
		for range count {
			msgs = append(msgs, r.message(obj(s, "message")))
		}
	}
	wait := s["wait"] != false
	reports := []wdpool.DeliveryReport{}
	var err error
	switch str(s, "mode", "sync") {
	case "sync":
		for _, m := range msgs {
			var rep wdpool.DeliveryReport
			if rep, err = p.ProduceSync(ctx, m); err != nil {
				break
			}
			reports = append(reports, rep)
		}
	case "many_sync":
		reports, err = p.ProduceManySync(ctx, msgs)
	case "async":
		for _, m := range msgs {
			if !wait {
				if err = p.Send(m); err != nil {
					break
				}
				continue
			}
			var d *wdpool.Delivery
			if d, err = p.ProduceAsync(m); err != nil {
				break
			}
			err = d.Wait(ctx)
			reports = append(reports, d.Report())
			if err != nil {
				break
			}
		}
	case "many_async":
		var d *wdpool.Delivery
		if d, err = p.ProduceManyAsync(msgs); err == nil {
			if wait {
				err = d.Wait(ctx)
				reports = d.Reports()
			} else {
				d.Close()
			}
		}
	default:
		return reply{kind: "unknown mode"}
	}
	rep := replyOf(err)
	rep.reports = reports
	return rep
}

func (r *scenarioRun) checkOutcome(expect map[string]any, rep reply) {
	want := str(expect, "result", "ok")
	if want != rep.kind {
		r.fail("result: got %s (%s), expected %s", rep.kind, rep.message, want)
	}
	r.checkContains(expect, "message", rep.message)
	r.checkFields(expect, map[string]any{"kafka_code": rep.kafkaCode})
	if want, ok := expect["kafka_flags"].([]any); ok {
		var names []string
		for _, w := range want {
			names = append(names, fmt.Sprint(w))
		}
		sort.Strings(names)
		got := append([]string{}, rep.kafkaFlags...)
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(names, ",") {
			r.fail("kafka_flags: got %v, expected %v", got, names)
		}
	}
}

func (r *scenarioRun) checkContains(expect map[string]any, key, actual string) {
	var subs []string
	switch v := expect[key].(type) {
	case string:
		subs = []string{v}
	case []any:
		for _, x := range v {
			subs = append(subs, fmt.Sprint(x))
		}
	}
	for _, sub := range subs {
		if sub = r.expand(sub, -1); !strings.Contains(actual, sub) {
			r.fail("%s: %q does not contain %q", key, actual, sub)
		}
	}
}

// checkFields compares the expected keys present in `got` (numbers as
// float64, so 3 == uint64(3)).
func (r *scenarioRun) checkFields(expect map[string]any, got map[string]any) {
	for key, actual := range got {
		want, ok := expect[key]
		if !ok {
			continue
		}
		if s, ok := want.(string); ok {
			want = r.expand(s, -1)
		}
		if !sameValue(want, actual) {
			r.fail("%s: got %v, expected %v", key, actual, want)
		}
	}
}

func sameValue(want, actual any) bool {
	switch a := actual.(type) {
	case int:
		return want == float64(a)
	case int32:
		return want == float64(a)
	case int64:
		return want == float64(a)
	case uint64:
		return want == float64(a)
	}
	return reflect.DeepEqual(want, actual)
}

func (r *scenarioRun) checkReports(expect map[string]any, reports []wdpool.DeliveryReport) {
	if want, ok := expect["offsets"].([]any); ok {
		got := make([]any, len(reports))
		for i, rep := range reports {
			got[i] = float64(rep.Offset)
		}
		if !reflect.DeepEqual(got, want) {
			r.fail("offsets: got %v, expected %v", got, want)
		}
	}
	delivered := 0
	for _, rep := range reports {
		r.checkFields(expect, map[string]any{"partition": rep.Partition})
		if rep.Err == nil && rep.Offset >= 0 {
			delivered++
		}
	}
	r.checkFields(expect, map[string]any{"delivered": delivered})
}

func (r *scenarioRun) checkEvents(want []any) {
	names := map[uint64]string{}
	for name, id := range r.ids {
		names[id] = name
	}
	r.mu.Lock()
	all := r.events[r.seen:]
	r.seen = len(r.events)
	r.mu.Unlock()
	k := 0
	for _, ev := range all {
		pool, ok := names[ev.PoolID]
		if !ok || ev.Kind == wdpool.EventError || ev.Kind == wdpool.EventStatistics {
			continue
		}
		if k >= len(want) {
			r.fail("unexpected event %s (pool %s)", ev.Name, pool)
			k++
			continue
		}
		x := want[k].(map[string]any)
		k++
		r.checkFields(x, map[string]any{"name": ev.Name, "pool": pool, "global": ev.Global, "size": ev.Size,
			"timeout_ms": ev.Timeout.Milliseconds(), "slot": ev.Slot, "producer_id": ev.ProducerID,
			"available": ev.Available, "undelivered": ev.Undelivered})
		r.checkContains(x, "message", ev.Message)
		if max, ok := x["waited_ms_max"].(float64); ok && float64(ev.Waited.Milliseconds()) > max {
			r.fail("waited_ms: got %d, expected at most %v", ev.Waited.Milliseconds(), max)
		}
	}
	for ; k < len(want); k++ {
		r.fail("missing event %v", want[k].(map[string]any)["name"])
	}
}

func (r *scenarioRun) teardown() {
	for name, o := range r.owners {
		if o.depth > 0 {
			r.fail("owner %s left %d scope(s) open", name, o.depth)
			for o.depth > 0 {
				o.call(step{"op": "end", "how": "ok"})
			}
		}
	}
	for _, o := range r.owners {
		o.in <- step{"op": "quit"} // its goroutine returns
	}
	for name, global := range r.global {
		if global && wdpool.Active() && r.ids[name] == r.lastGlobalSetupID() {
			wdpool.Shutdown(true)
		}
	}
	for _, p := range r.pools {
		p.Shutdown(true)
	}
	r.cluster.Close()
}
