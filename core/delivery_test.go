package core_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	auditfile "github.com/metacircular/mcias/backends/audit/file"
	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/postgres"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/internal/pgtest"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

// Sink behaviours a test switches between.
const (
	sinkAccept = iota // store the batch
	sinkFail          // fail with ErrUnavailable
	sinkHang          // block until the call's deadline
	sinkStuck         // block until released, ignoring the deadline
)

// ctlSink is a sink the test controls: the dependency of the delivery
// code under test, which must cope with it failing, hanging or ignoring
// its deadline. Accepted events are kept in order, duplicates included.
type ctlSink struct {
	name string

	mu       sync.Mutex
	mode     int
	got      []audit.Event
	calls    int
	inCall   int // calls running now
	maxInCal int // most calls ever running at once
	release  chan struct{}
}

func newCtlSink(name string) *ctlSink {
	return &ctlSink{name: name, release: make(chan struct{})}
}

func (s *ctlSink) Info(context.Context) (audit.Info, error) { return audit.Info{Name: s.name}, nil }
func (s *ctlSink) Close(context.Context) error              { return nil }

func (s *ctlSink) set(mode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
}

func (s *ctlSink) Deliver(ctx context.Context, evs []audit.Event) error {
	s.mu.Lock()
	s.calls++
	s.inCall++
	s.maxInCal = max(s.maxInCal, s.inCall)
	mode, release := s.mode, s.release
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inCall--
		s.mu.Unlock()
	}()
	switch mode {
	case sinkFail:
		return fmt.Errorf("ctl sink %s: refused: %w", s.name, sdk.ErrUnavailable)
	case sinkHang:
		<-ctx.Done()
		return ctx.Err()
	case sinkStuck:
		<-release
		return errors.New("released")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, evs...)
	return nil
}

func (s *ctlSink) snapshot() (got []audit.Event, calls, maxInCall int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]audit.Event(nil), s.got...), s.calls, s.maxInCal
}

// fastDelivery makes retries, breaker and deadline short enough to watch.
func fastDelivery(c *core.Config) {
	c.Audit = core.AuditDelivery{
		DeliverTimeout:  200 * time.Millisecond,
		RetryMin:        10 * time.Millisecond,
		RetryMax:        40 * time.Millisecond,
		BreakerFailures: 3,
		BreakerCooldown: 400 * time.Millisecond,
		CheckpointEvery: -1,
	}
}

// eventually polls cond for up to 15s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sinkState(e *env, name string) core.SinkStatus {
	e.t.Helper()
	b, ok := e.svc.Ready(context.Background()).Backends["audit:"+name]
	if !ok || b.Sink == nil {
		e.t.Fatalf("readiness has no sink %s", name)
	}
	return *b.Sink
}

// sameIDs reports whether got holds exactly the IDs of want, in order.
func sameIDs(got, want []audit.Event) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].ID != want[i].ID {
			return false
		}
	}
	return true
}

// A sink's cursor lives in storage: after a restart the sink gets what
// was stored meanwhile and nothing it already acknowledged.
func TestSinkCursorSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	open := func() audit.Sink {
		sk, err := auditfile.Open(t.Context(), "file://"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sk.Close(context.Background()) })
		return sk
	}
	e := newEnvWith(t, fastDelivery, core.SinkConfig{Name: "archive", Sink: open()})
	e.user("alice", "a long enough password")
	eventually(t, "first delivery", func() bool { return len(readSink(t, path)) == len(e.events()) })
	if err := e.svc.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	cur, err := e.store.Audit().SinkCursor(t.Context(), "archive")
	if evs := e.events(); err != nil || cur != evs[len(evs)-1].Seq {
		t.Fatalf("stored cursor %d (%v), head %d", cur, err, evs[len(evs)-1].Seq)
	}

	// Another process stores events while this one is down.
	for i := range 3 {
		ev := audit.Event{ID: fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i), Time: time.Now().UTC(),
			Type: audit.LoginFailure, Outcome: audit.Failure, Details: map[string]string{"reason": "test"}}
		if err := e.store.Audit().AppendEvent(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	e.deps.Sinks = []core.SinkConfig{{Name: "archive", Sink: open()}}
	e.svc = e.open()
	want := e.events()
	eventually(t, "delivery after restart", func() bool { return len(readSink(t, path)) >= len(want) })
	lines := readSink(t, path)
	if len(lines) != len(want) {
		t.Fatalf("sink holds %d events, storage %d: redelivered or lost", len(lines), len(want))
	}
	for i, l := range lines {
		if l.ID != want[i].ID {
			t.Fatalf("sink line %d is %s, want %s", i, l.ID, want[i].ID)
		}
	}
}

// A sink that hangs is cut off at the deadline, even one that ignores its
// context; the other sink keeps receiving and requests keep succeeding.
func TestHangingSinkDoesNotHoldOthers(t *testing.T) {
	for name, mode := range map[string]int{"case=hangs until the deadline": sinkHang, "case=ignores the deadline": sinkStuck} {
		t.Run(name, func(t *testing.T) {
			hung, good := newCtlSink("hung"), newCtlSink("good")
			hung.set(mode)
			e := newEnvWith(t, fastDelivery, core.SinkConfig{Sink: hung}, core.SinkConfig{Sink: good})
			t.Cleanup(func() { close(hung.release) })
			for i := range 5 {
				e.user(fmt.Sprintf("user%d", i), "a long enough password")
				eventually(t, "the good sink", func() bool {
					got, _, _ := good.snapshot()
					return sameIDs(got, e.events())
				})
			}
			eventually(t, "the hung sink reported", func() bool {
				st := sinkState(e, "hung")
				return st.State != core.SinkOK && st.LastError == "timeout" && st.LagEvents > 0
			})
			if st := sinkState(e, "good"); st.State != core.SinkOK || st.LagEvents != 0 {
				t.Fatalf("good sink status %+v", st)
			}
			r := e.svc.Ready(t.Context())
			if !r.Ready || r.Backends["audit:hung"].Up {
				t.Fatalf("readiness %+v: an optional sink must be reported down without making the service unready", r)
			}
			if _, _, most := hung.snapshot(); most != 1 {
				t.Fatalf("%d calls ran at once on the hung sink", most)
			}
		})
	}
}

// After BreakerFailures failures the breaker opens: no call for the
// cool-down, then one probe; when the sink is back every event arrives,
// in order, exactly once (failed batches were not accepted).
func TestSinkBreaker(t *testing.T) {
	sk := newCtlSink("flaky")
	sk.set(sinkFail)
	e := newEnvWith(t, func(c *core.Config) {
		fastDelivery(c)
		c.Audit.BreakerCooldown = 2 * time.Second
	}, core.SinkConfig{Sink: sk})
	eventually(t, "breaker open", func() bool { return sinkState(e, "flaky").State == core.SinkOpen })
	st := sinkState(e, "flaky")
	if _, calls, _ := sk.snapshot(); calls != 3 || st.Failures != 3 || st.LastError != "unavailable" {
		t.Fatalf("breaker opened after %d calls, status %+v; want 3 failures, kind unavailable", calls, st)
	}
	// Open: pokes (new events) bring no call before the cool-down.
	e.user("bob", "a long enough password")
	time.Sleep(500 * time.Millisecond)
	if _, calls, _ := sk.snapshot(); calls != 3 {
		t.Fatalf("%d calls while the breaker was open", calls)
	}
	// Half-open: one probe, which fails and opens it again.
	eventually(t, "a failed probe", func() bool { st := sinkState(e, "flaky"); return st.Failures == 4 })
	if st := sinkState(e, "flaky"); st.State != core.SinkOpen {
		t.Fatalf("after a failed probe: %+v", st)
	}
	if _, calls, _ := sk.snapshot(); calls != 4 {
		t.Fatalf("%d calls: the half-open breaker must send one probe", calls)
	}
	sk.set(sinkAccept)
	eventually(t, "recovery", func() bool { return sinkState(e, "flaky").State == core.SinkOK })
	eventually(t, "catch-up", func() bool { got, _, _ := sk.snapshot(); return len(got) >= len(e.events()) })
	got, _, _ := sk.snapshot()
	if want := e.events(); !sameIDs(got, want) {
		t.Fatalf("sink got %d events, want the %d stored, in order, once", len(got), len(want))
	}
	if st := sinkState(e, "flaky"); st.Failures != 0 || st.LagEvents != 0 {
		t.Fatalf("after recovery: %+v", st)
	}
}

// A required sink lagging beyond its bound turns readiness red while
// requests are still served; it turns green once the sink catches up.
func TestRequiredSinkLag(t *testing.T) {
	t.Run("case=events", func(t *testing.T) {
		sk := newCtlSink("siem")
		sk.set(sinkFail)
		const bound = 8
		e := newEnvWith(t, fastDelivery, core.SinkConfig{Sink: sk, Required: true, MaxLagEvents: bound})
		if st := sinkState(e, "siem"); !e.svc.Ready(t.Context()).Ready || st.LagEvents == 0 || st.LagEvents > bound {
			t.Fatalf("status %+v: a lag within the bound must not turn readiness red", st)
		}
		for i := range bound {
			e.user(fmt.Sprintf("user%d", i), "a long enough password") // served while the sink is down
		}
		r := e.svc.Ready(t.Context())
		st := sinkState(e, "siem")
		if r.Ready || r.Backends["audit:siem"].Up || !st.LagExceeded || st.LagEvents <= bound || !st.Required {
			t.Fatalf("lag %d over a bound of %d but readiness %+v, status %+v", st.LagEvents, bound, r, st)
		}
		if !r.Backends["storage"].Up || !r.Backends["custody"].Up {
			t.Fatalf("backends %+v", r.Backends)
		}
		sk.set(sinkAccept)
		eventually(t, "ready again", func() bool { return e.svc.Ready(t.Context()).Ready })
	})
	t.Run("case=age", func(t *testing.T) {
		sk := newCtlSink("siem")
		sk.set(sinkFail)
		e := newEnvWith(t, fastDelivery, core.SinkConfig{Sink: sk, Required: true, MaxLagAge: time.Minute})
		if st := sinkState(e, "siem"); !e.svc.Ready(t.Context()).Ready || st.LagAge > time.Minute || st.LagEvents == 0 {
			t.Fatalf("young lag must not turn readiness red: %+v", st)
		}
		e.clk.Advance(2 * time.Minute)
		if st := sinkState(e, "siem"); e.svc.Ready(t.Context()).Ready || st.LagAge < 2*time.Minute {
			t.Fatalf("oldest undelivered event is 2m old, bound 1m, yet ready: %+v", st)
		}
		sk.set(sinkAccept)
		eventually(t, "ready again", func() bool { return e.svc.Ready(t.Context()).Ready })
	})
}

func TestSinkConfigRefusesDuplicateNames(t *testing.T) {
	e := newEnv(t)
	d := e.deps
	d.Sinks = []core.SinkConfig{{Sink: newCtlSink("x")}, {Sink: newCtlSink("x")}}
	if _, err := core.New(t.Context(), e.cfg, d); err == nil || !strings.Contains(err.Error(), `two audit sinks are named "x"`) {
		t.Fatalf("duplicate names: %v", err)
	}
	d.Sinks = []core.SinkConfig{{Name: "Bad Name", Sink: newCtlSink("x")}}
	if _, err := core.New(t.Context(), e.cfg, d); err == nil {
		t.Fatal("bad name accepted")
	}
	d.Sinks = []core.SinkConfig{{Sink: newCtlSink("x"), Required: true}}
	if _, err := core.New(t.Context(), e.cfg, d); err == nil {
		t.Fatal("a required sink without a bound accepted")
	}
}

// A sink with start = now skips what was stored before it first ran.
func TestSinkStartNow(t *testing.T) {
	e := newEnv(t)
	before := e.events()
	sk := newCtlSink("late")
	e.deps.Sinks = []core.SinkConfig{{Sink: sk, Start: core.StartNow}}
	if err := e.svc.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.svc = e.open()
	e.user("carol", "a long enough password")
	eventually(t, "delivery", func() bool { got, _, _ := sk.snapshot(); return len(got) > 0 })
	got, _, _ := sk.snapshot()
	for _, ev := range got {
		if ev.Seq <= before[len(before)-1].Seq {
			t.Fatalf("start=now sink got event %d, stored before it started", ev.Seq)
		}
	}
}

// verifyCheckpoint checks a checkpoint event against the stored chain and
// custody's public key.
func verifyCheckpoint(t *testing.T, cp audit.Event, evs []audit.Event, keys []custody.PublicKey) {
	t.Helper()
	seq, err := strconv.ParseInt(cp.Details["seq"], 10, 64)
	if err != nil {
		t.Fatalf("checkpoint seq %q", cp.Details["seq"])
	}
	var head *audit.Event
	for i := range evs {
		if evs[i].Seq == seq {
			head = &evs[i]
		}
	}
	if head == nil || cp.Details["hash"] != hex.EncodeToString(head.Hash) {
		t.Fatalf("checkpoint hash %s does not match stored event %d", cp.Details["hash"], seq)
	}
	// The stored chain up to the head recomputes to the signed hash.
	prev := audit.GenesisHash()
	for _, ev := range evs {
		if ev.Seq > seq {
			break
		}
		if !bytes.Equal(ev.PrevHash, prev) || !bytes.Equal(audit.ChainHash(prev, ev), ev.Hash) {
			t.Fatalf("chain broken at %d", ev.Seq)
		}
		prev = ev.Hash
	}
	sig, err := base64.RawURLEncoding.DecodeString(cp.Details["sig"])
	if err != nil {
		t.Fatalf("sig: %v", err)
	}
	for _, k := range keys {
		if k.KID == cp.Details["kid"] {
			if !ed25519.Verify(k.Key, audit.CheckpointMessage(seq, head.Hash), sig) {
				t.Fatal("checkpoint signature does not verify")
			}
			return
		}
	}
	t.Fatalf("no public key %s", cp.Details["kid"])
}

func TestCheckpoints(t *testing.T) {
	e := newEnvWith(t, func(c *core.Config) { c.Audit.CheckpointEvery = 100 * time.Millisecond })
	keys, err := e.cust.PublicKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The loop checkpoints the head when it moved, until a checkpoint
	// covers the event just before it (an event written while a
	// checkpoint was being signed gets the next one)...
	e.user("dave", "a long enough password")
	eventually(t, "a checkpoint of the head", func() bool {
		evs := e.events()
		cp := evs[len(evs)-1]
		return cp.Type == audit.Checkpoint && cp.Details["seq"] == strconv.FormatInt(cp.Seq-1, 10)
	})
	evs := e.events()
	for _, ev := range evs {
		if ev.Type == audit.Checkpoint {
			verifyCheckpoint(t, ev, evs, keys)
		}
	}
	// ...and not again while it did not.
	time.Sleep(300 * time.Millisecond)
	if n := len(e.events()); n != len(evs) {
		t.Fatalf("%d events after an idle period, %d before", n, len(evs))
	}
	if wrote, err := e.svc.Checkpoint(t.Context()); wrote || err != nil {
		t.Fatalf("checkpoint of a checkpoint: %v %v", wrote, err)
	}
	// A graceful shutdown checkpoints what came since.
	e.user("erin", "a long enough password")
	if err := e.svc.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	evs = e.events()
	last := evs[len(evs)-1]
	if last.Type != audit.Checkpoint || last.Details["seq"] != strconv.FormatInt(last.Seq-1, 10) {
		t.Fatalf("last event after Close is %s %v", last.Type, last.Details)
	}
	verifyCheckpoint(t, last, evs, keys)
	for _, ev := range evs {
		if ev.Type == audit.Checkpoint && (ev.ActorID != "" || ev.Outcome != audit.Success) {
			t.Fatalf("checkpoint event %+v", ev)
		}
	}
}

// Point 1 of the delivery contract: a change whose event cannot be stored
// does not happen. The event table refuses inserts (a trigger on the real
// database file), so every write fails and changes nothing.
func TestWriteFailsWhenItsEventCannotBeStored(t *testing.T) {
	dir := t.TempDir()
	e := newEnvAt(t, dir, nil)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "mcias.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func() int {
		n, err := e.store.Accounts().CountAccounts(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before, evsBefore := count(), len(e.events())
	if _, err := db.ExecContext(t.Context(), `CREATE TRIGGER refuse_events BEFORE INSERT ON audit_events
		BEGIN SELECT RAISE(ABORT, 'audit log refuses'); END`); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.CreateAccount(t.Context(), e.admin, core.NewAccount{Username: "frank", Type: storage.Human, Password: "a long enough password"})
	if err == nil {
		t.Fatal("account created without its event")
	}
	if _, lerr := e.svc.Login(t.Context(), core.Caller{IP: "192.0.2.9"}, adminName, adminPW, ""); lerr == nil {
		t.Fatal("login succeeded without its event")
	}
	if _, err := db.ExecContext(t.Context(), `DROP TRIGGER refuse_events`); err != nil {
		t.Fatal(err)
	}
	if count() != before || len(e.events()) != evsBefore {
		t.Fatalf("accounts %d -> %d, events %d -> %d", before, count(), evsBefore, len(e.events()))
	}
	if _, err := e.svc.CreateAccount(t.Context(), e.admin, core.NewAccount{Username: "frank", Type: storage.Human, Password: "a long enough password"}); err != nil {
		t.Fatalf("after the log accepts events again: %v", err)
	}
}

// node is one core.Service of several on one database file, with its own
// log.
type node struct {
	svc  *core.Service
	logs *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// cluster is a sqlite file (a storage.Leaser) and local custody in a
// fresh directory; start adds nodes, each with its own store on the file
// (its own connections, as another process has).
type cluster struct {
	t     *testing.T
	db    string
	store storage.Store // the test's own view of the file
	cust  custody.Custodian
	clk   *clock
	cfg   core.Config
}

// openStore opens the database at uri with the backend its scheme names.
func openStore(ctx context.Context, uri string) (storage.Store, error) {
	if strings.HasPrefix(uri, "postgres:") {
		return postgres.Open(ctx, uri, nil)
	}
	return sqlite.Open(ctx, uri, nil)
}

// backends are the stores the multi-node tests run on: one SQLite file
// that several stores open, and one PostgreSQL database.
var backends = []string{"sqlite", "postgres"}

func newCluster(t *testing.T, backend string, edit func(*core.Config)) *cluster {
	t.Helper()
	dir := t.TempDir()
	db := "sqlite://" + filepath.Join(dir, "mcias.db")
	if backend == "postgres" {
		db = pgtest.NewDatabase(t)
	}
	st, err := openStore(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.(storage.Leaser); !ok {
		t.Fatalf("the %s store offers no leases", backend)
	}
	keyFile := filepath.Join(dir, "master.key")
	if err := local.GenerateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	cust, err := local.Open(t.Context(), "local://"+filepath.Join(dir, "keys")+"?key_file="+keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cust.Close(context.Background())
		_ = st.Close(context.Background())
	})
	c := &cluster{t: t, db: db, store: st, cust: cust, clk: &clock{t: time.Now().UTC().Truncate(time.Second)},
		cfg: core.Config{Issuer: issuer, Password: fastParams, MaxConcurrentHashes: 2, LeaseTTL: 600 * time.Millisecond}}
	fastDelivery(&c.cfg)
	if edit != nil {
		edit(&c.cfg)
	}
	return c
}

func (c *cluster) start(sinks ...core.SinkConfig) *node {
	c.t.Helper()
	n := &node{logs: &syncBuffer{}}
	st, err := openStore(context.Background(), c.db)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = st.Close(context.Background()) })
	svc, err := core.New(context.Background(), c.cfg, core.Deps{
		Store: st, Custodian: c.cust, Sinks: sinks, Now: c.clk.Now,
		Logger: slog.New(slog.NewJSONHandler(n.logs, nil)),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	n.svc = svc
	c.t.Cleanup(func() { _ = svc.Close(context.Background()) })
	return n
}

func (n *node) holds(lease string) bool {
	return strings.Contains(n.logs.String(), `"msg":"core: lease acquired","lease":"`+lease+`"`)
}

// Two nodes on one store: exactly one runs the rotation schedule; when it
// stops, the other takes over.
func TestExactlyOneRotator(t *testing.T) {
	for _, b := range backends {
		t.Run("backend="+b, func(t *testing.T) { testExactlyOneRotator(t, b) })
	}
}

func testExactlyOneRotator(t *testing.T, backend string) {
	c := newCluster(t, backend, func(cfg *core.Config) {
		cfg.PublishAhead = 2 * time.Second
		cfg.RotateEvery = time.Hour
	})
	a, b := c.start(), c.start()
	eventually(t, "a rotation lease", func() bool { return a.holds("key-rotation") || b.holds("key-rotation") })
	if !a.holds("key-rotation") {
		a, b = b, a
	}
	time.Sleep(time.Second) // several renewals: the other must still not hold it
	if b.holds("key-rotation") {
		t.Fatal("both nodes hold the rotation lease")
	}
	// The schedule comes due: the holder, and only it, creates the next key.
	c.clk.Advance(time.Hour)
	eventually(t, "scheduled rotation", func() bool {
		return strings.Contains(a.logs.String(), `"msg":"core: key rotation","action":"create_next"`)
	})
	if strings.Contains(b.logs.String(), `"msg":"core: key rotation"`) {
		t.Fatalf("the standby node rotated:\n%s", b.logs.String())
	}
	// The holder stops; the other takes over and activates the next key.
	if err := a.svc.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "takeover", func() bool { return b.holds("key-rotation") })
	c.clk.Advance(3 * time.Second)
	eventually(t, "activation by the new holder", func() bool {
		return strings.Contains(b.logs.String(), `"msg":"core: key rotation","action":"activate"`)
	})
	if strings.Contains(a.logs.String()+b.logs.String(), "audit event not stored") {
		t.Fatalf("a rotation went unrecorded:\na:\n%s\nb:\n%s", a.logs.String(), b.logs.String())
	}
	if n := strings.Count(a.logs.String()+b.logs.String(), `"msg":"core: key rotation","action":"create_next"`); n != 1 {
		t.Fatalf("%d next keys created\na:\n%s\nb:\n%s", n, a.logs.String(), b.logs.String())
	}
}

// Two nodes configured with the same sink: one delivers, the other stands
// by; when the first stops the second continues from the stored cursor,
// so the sink loses nothing and sees nothing twice.
func TestSinkLeaseTakeover(t *testing.T) {
	for _, b := range backends {
		t.Run("backend="+b, func(t *testing.T) { testSinkLeaseTakeover(t, b) })
	}
}

func testSinkLeaseTakeover(t *testing.T, backend string) {
	c := newCluster(t, backend, nil)
	sa, sb := newCtlSink("siem"), newCtlSink("siem")
	a := c.start(core.SinkConfig{Sink: sa})
	if _, err := a.svc.Bootstrap(t.Context(), adminName, adminPW); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a holds the sink", func() bool { return a.holds("audit-sink:siem") })
	b := c.start(core.SinkConfig{Sink: sb})
	all := func() []audit.Event {
		evs, err := c.store.Audit().ReadEvents(t.Context(), 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	for range 3 {
		if _, err := b.svc.Login(t.Context(), core.Caller{IP: "192.0.2.7"}, adminName, adminPW, ""); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "delivery through a", func() bool { got, _, _ := sa.snapshot(); return len(got) == len(all()) })
	if got, calls, _ := sb.snapshot(); len(got) != 0 || calls != 0 || b.holds("audit-sink:siem") {
		t.Fatal("the standby node delivered")
	}
	// The standby node reports the cluster's cursor, once a stored it.
	eventually(t, "standby status", func() bool {
		st := b.svc.Ready(t.Context()).Backends["audit:siem"].Sink
		return st.State == core.SinkStandby && st.LagEvents == 0 && st.Cursor == int64(len(all()))
	})
	if err := a.svc.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := b.svc.Login(t.Context(), core.Caller{IP: "192.0.2.7"}, adminName, adminPW, ""); err != nil {
			t.Fatal(err)
		}
	}
	// Delivery is at least once: a batch whose acknowledgement a loaded
	// machine took longer than the deadline to see goes out again, so
	// compare after dropping repeats by ID, as a sink does, and allow no
	// more repeats than one batch per node.
	eventually(t, "delivery through b", func() bool {
		ga, _, _ := sa.snapshot()
		gb, _, _ := sb.snapshot()
		return len(dedupe(append(ga, gb...))) == len(all())
	})
	ga, _, _ := sa.snapshot()
	gb, _, _ := sb.snapshot()
	got := dedupe(append(ga, gb...))
	if !sameIDs(got, all()) {
		t.Fatalf("a got %d, b got %d (%d after dropping repeats), storage holds %d: lost or out of order", len(ga), len(gb), len(got), len(all()))
	}
	if repeats := len(ga) + len(gb) - len(got); repeats > 6 {
		t.Fatalf("%d repeated deliveries across a graceful handover", repeats)
	}
}

// dedupe keeps the first delivery of each event ID, in order, as a sink
// that drops duplicates would.
func dedupe(evs []audit.Event) []audit.Event {
	seen := map[string]bool{}
	var out []audit.Event
	for _, ev := range evs {
		if !seen[ev.ID] {
			seen[ev.ID] = true
			out = append(out, ev)
		}
	}
	return out
}

// Events that trickle in one at a time go out in batches, one Deliver
// (and one cursor write) per BatchDelay, not one per request: a sink's
// durable write per request would compete with the requests' own commits
// (two file sinks cut token issue throughput to a third before this).
func TestSinkBatchesATrickle(t *testing.T) {
	sk := newCtlSink("trickle")
	e := newEnvWith(t, func(c *core.Config) {
		fastDelivery(c)
		c.Audit.BatchDelay = 300 * time.Millisecond
	}, core.SinkConfig{Name: "trickle", Sink: sk})
	eventually(t, "bootstrap events delivered", func() bool { got, _, _ := sk.snapshot(); return len(got) == len(e.events()) })
	_, before, _ := sk.snapshot()
	const n = 40
	start := time.Now()
	for range n {
		if _, err := e.svc.Login(t.Context(), core.Caller{IP: "192.0.2.9", RequestID: "req-trickle"}, "nobody", "wrong password", ""); err == nil {
			t.Fatal("login of an unknown account succeeded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	spent := time.Since(start)
	want := e.events()
	eventually(t, "trickle delivered", func() bool { got, _, _ := sk.snapshot(); return len(got) == len(want) })
	got, after, _ := sk.snapshot()
	if !sameIDs(got, want) {
		t.Fatal("sink does not hold the stored events in order")
	}
	// One call per batch delay over the time the logins took, plus the
	// first event after idle and the tail; without batching it is one
	// call per event.
	if calls, most := after-before, int(spent/(300*time.Millisecond))+3; calls > most {
		t.Fatalf("%d events over %s took %d Deliver calls, want at most %d", n, spent.Round(time.Millisecond), calls, most)
	}
}
