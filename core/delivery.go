package core

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// Delivery of stored audit events to sinks.
//
// Storage is the system of record: an event is committed with the change
// it records (or the request fails). Sinks get copies afterwards, each
// from its own worker goroutine that follows the stored log from the
// sink's cursor, the Seq of the last event the sink acknowledged, kept in
// storage (AuditStore.SinkCursor). A request only pokes the workers (a
// non-blocking send), so no sink can slow a request or another sink.
//
// Per sink: events go in Seq order, in batches; a batch is acknowledged
// when Deliver returns nil, and only then is the cursor advanced and
// written. A failed or timed-out batch is delivered again, so delivery is
// at least once: after a crash a sink may see again the batch that was in
// flight (sinks drop duplicates by Event.ID). Every Deliver call has a
// deadline; failures are retried with exponential backoff and jitter; after
// BreakerFailures consecutive failures the breaker opens and the sink is
// left alone for BreakerCooldown, then one probe batch decides (half-open).
//
// With several nodes on one store that offers storage.Leaser, each sink is
// delivered by the one node holding the lease "audit-sink:<name>"; the
// others stand by and take over from the persisted cursor when the holder
// stops. Without a Leaser every process delivers on its own.

// sinkBatch is how many events one Deliver call carries.
const sinkBatch = 256

// Defaults of AuditDelivery, applied by New to zero fields.
const (
	DefaultDeliverTimeout  = 10 * time.Second
	DefaultRetryMin        = 200 * time.Millisecond
	DefaultRetryMax        = 30 * time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = time.Minute
	DefaultCheckpointEvery = time.Minute
	DefaultLeaseTTL        = 30 * time.Second
)

// sinkStatusLogEvery rate-limits the "still failing" log line of a sink
// that stays down, so a retry storm logs once a minute, not per retry.
var sinkStatusLogEvery = time.Minute

// AuditDelivery configures delivery to sinks and checkpoints.
type AuditDelivery struct {
	DeliverTimeout  time.Duration // deadline of one Deliver call; default 10s
	RetryMin        time.Duration // first retry delay; default 200ms
	RetryMax        time.Duration // retry delay cap; default 30s
	BreakerFailures int           // consecutive failures that open the breaker; default 5
	BreakerCooldown time.Duration // how long an open breaker rests; default 1m
	// CheckpointEvery is the checkpoint period (see checkpoint.go);
	// default 1m, negative: no checkpoints.
	CheckpointEvery time.Duration
}

func (a *AuditDelivery) applyDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&a.DeliverTimeout, DefaultDeliverTimeout)
	def(&a.RetryMin, DefaultRetryMin)
	def(&a.RetryMax, DefaultRetryMax)
	def(&a.BreakerCooldown, DefaultBreakerCooldown)
	def(&a.CheckpointEvery, DefaultCheckpointEvery)
	if a.BreakerFailures == 0 {
		a.BreakerFailures = DefaultBreakerFailures
	}
	switch {
	case a.DeliverTimeout < 0, a.RetryMin < 0, a.BreakerCooldown < 0, a.BreakerFailures < 0:
		return errors.New("core: config: audit delivery durations and breaker failures must not be negative")
	case a.RetryMax < a.RetryMin:
		return fmt.Errorf("core: config: audit retry_max %s is below retry_min %s", a.RetryMax, a.RetryMin)
	}
	return nil
}

// Where a sink new to storage (no cursor stored under its name) starts.
const (
	// StartBeginning delivers the whole stored log (the default): a new
	// sink misses nothing.
	StartBeginning = "beginning"
	// StartNow delivers only events stored after the sink first ran.
	StartNow = "now"
)

// SinkConfig is one audit sink and how it is delivered to.
type SinkConfig struct {
	// Name identifies the sink's cursor and lease in storage, so it must
	// stay the same across restarts and be the same on every node; unique
	// among the sinks. Empty: the sink's Info name.
	Name string
	Sink audit.Sink
	// Start: StartBeginning (default, also for "") or StartNow.
	Start string
	// Required sinks turn readiness red when they lag more than MaxLag
	// events or MaxLagAge behind (zero: that bound is not checked).
	// Requests are served regardless.
	Required     bool
	MaxLagEvents int64
	MaxLagAge    time.Duration
}

var sinkNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Sink delivery states.
const (
	SinkOK       = "ok"       // delivering, last call succeeded
	SinkRetrying = "retrying" // the last call failed; retrying with backoff
	SinkOpen     = "open"     // breaker open: resting, then one probe batch
	SinkStandby  = "standby"  // another node holds this sink's lease
)

// SinkStatus is one sink's delivery as readiness reports it. Error text is
// a kind only, never the sink's own message.
type SinkStatus struct {
	State    string
	Required bool
	// Cursor is the Seq of the last event the sink acknowledged (from
	// storage, so the same on every node).
	Cursor int64
	// LagEvents is the Seq distance from Cursor to the newest stored
	// event (an upper bound of the events not yet delivered); LagAge the
	// age of the oldest event not yet delivered (0 when none).
	LagEvents int64
	LagAge    time.Duration
	// LagExceeded: a required sink is beyond its bound.
	LagExceeded bool
	Failures    int    // consecutive failed calls
	LastError   string // kind of the last failure ("timeout", "unavailable", ...)
}

// sinkWorker delivers stored events to one sink.
type sinkWorker struct {
	cfg  SinkConfig
	kind string // the backend's name ("file", "webhook")
	poke chan struct{}

	mu        sync.Mutex
	state     string
	failures  int
	lastErr   string
	loggedAt  time.Time // last state log, for rate limiting
	inflight  chan struct{}
	openUntil time.Time
}

func newSinkWorker(cfg SinkConfig) *sinkWorker {
	return &sinkWorker{cfg: cfg, poke: make(chan struct{}, 1), state: SinkStandby}
}

// sinkWorkers names and checks the configured sinks.
func sinkWorkers(ctx context.Context, cfgs []SinkConfig) ([]*sinkWorker, error) {
	seen := map[string]bool{}
	var out []*sinkWorker
	for i, c := range cfgs {
		if c.Sink == nil {
			return nil, fmt.Errorf("core: config: audit sink %d has no sink", i)
		}
		// The backend's own name, shown in readiness; read once, so a
		// wedged sink cannot hold up /v1/ready.
		info, err := c.Sink.Info(ctx)
		switch {
		case err != nil && c.Name == "":
			return nil, fmt.Errorf("core: config: audit sink %d: no name given and info failed: %w", i, err)
		case c.Name == "":
			c.Name = info.Name
		}
		kind := info.Name
		if kind == "" {
			kind = c.Name
		}
		switch {
		case !sinkNameRE.MatchString(c.Name):
			return nil, fmt.Errorf("core: config: audit sink name %q must match %s", c.Name, sinkNameRE)
		case seen[c.Name]:
			return nil, fmt.Errorf("core: config: two audit sinks are named %q; give each a unique name (its cursor in storage is kept by name)", c.Name)
		case c.Start != "" && c.Start != StartBeginning && c.Start != StartNow:
			return nil, fmt.Errorf("core: config: audit sink %q: start %q must be %q or %q", c.Name, c.Start, StartBeginning, StartNow)
		case c.MaxLagEvents < 0 || c.MaxLagAge < 0:
			return nil, fmt.Errorf("core: config: audit sink %q: max lag must not be negative", c.Name)
		case c.Required && c.MaxLagEvents == 0 && c.MaxLagAge == 0:
			return nil, fmt.Errorf("core: config: audit sink %q is required but has no max lag (events or age)", c.Name)
		}
		seen[c.Name] = true
		w := newSinkWorker(c)
		w.kind = kind
		out = append(out, w)
	}
	return out, nil
}

// pokeSinks wakes every sink worker; it never blocks.
func (s *Service) pokeSinks() {
	for _, w := range s.sinks {
		select {
		case w.poke <- struct{}{}:
		default:
		}
	}
}

// errKind is the client-safe name of a delivery failure.
func errKind(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return sdk.KindOf(err).Error()
}

// setState moves w to state and logs the change; a failure that does not
// change the state is logged at most once per sinkStatusLogEvery, with the
// lag behind the head (cursor is the worker's).
func (s *Service) setState(w *sinkWorker, state string, err error, wait time.Duration, cursor int64) {
	w.mu.Lock()
	prev := w.state
	w.state = state
	if err != nil {
		w.failures++
		w.lastErr = errKind(err)
	} else if state == SinkOK {
		w.failures = 0
	}
	failures, kind := w.failures, w.lastErr
	now := time.Now()
	logIt := prev != state || (err != nil && now.Sub(w.loggedAt) >= sinkStatusLogEvery)
	if logIt {
		w.loggedAt = now
	}
	w.mu.Unlock()
	if !logIt {
		return
	}
	attrs := []any{"sink", w.cfg.Name, "state", state, "previous", prev}
	switch {
	case err != nil:
		attrs = append(attrs, "failures", failures, "error_kind", kind, "retry_in", wait.Round(time.Millisecond), "cursor", cursor)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if head, herr := s.headSeq(ctx); herr == nil {
			attrs = append(attrs, "lag_events", head-cursor)
		}
		cancel()
		s.log.Warn("core: audit sink delivery failing", append(attrs, "err", err)...)
	case state == SinkOK && prev != SinkStandby:
		s.log.Info("core: audit sink delivering again", attrs...)
	default:
		s.log.Info("core: audit sink", attrs...)
	}
}

// backoff is the wait before retry number n (1-based): exponential from
// RetryMin, capped at RetryMax, with jitter in [d/2, d) so nodes and sinks
// that failed together do not retry together.
func (a *AuditDelivery) backoff(n int) time.Duration {
	d := a.RetryMin
	for i := 1; i < n && d < a.RetryMax; i++ {
		d *= 2
	}
	d = min(d, a.RetryMax)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// deliver makes one Deliver call bounded by the deadline (ctx carries
// values only). A sink that ignores its context is abandoned at the
// deadline; until that call returns no other is made, so the sink never
// sees two batches at once or out of order.
func (s *Service) deliver(ctx context.Context, w *sinkWorker, evs []audit.Event) error {
	w.mu.Lock()
	busy := w.inflight
	w.mu.Unlock()
	if busy != nil {
		select {
		case <-busy:
		default:
			return fmt.Errorf("previous call still running: %w", context.DeadlineExceeded)
		}
	}
	// Only the deadline ends a call: a shutdown or a lost lease lets the
	// call in flight finish (within its deadline), so an accepted batch is
	// recorded as such rather than sent again.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Audit.DeliverTimeout)
	defer cancel()
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = w.cfg.Sink.Deliver(dctx, evs)
	}()
	select {
	case <-done:
		return err
	case <-dctx.Done():
		w.mu.Lock()
		w.inflight = done
		w.mu.Unlock()
		return fmt.Errorf("deliver: %w", dctx.Err())
	}
}

// sinkCursor reads w's cursor, placing a new sink per its Start.
func (s *Service) sinkCursor(ctx context.Context, w *sinkWorker) (int64, error) {
	cur, err := s.store.Audit().SinkCursor(ctx, w.cfg.Name)
	if err != nil {
		return 0, fmt.Errorf("read cursor: %w", err)
	}
	if cur != 0 || w.cfg.Start != StartNow {
		return cur, nil
	}
	head, err := s.headSeq(ctx)
	if err != nil || head == 0 {
		return 0, err
	}
	if err := s.store.Audit().SetSinkCursor(ctx, w.cfg.Name, head); err != nil {
		return 0, fmt.Errorf("write cursor: %w", err)
	}
	return head, nil
}

// headSeq is the Seq of the newest stored event (0 when none).
func (s *Service) headSeq(ctx context.Context) (int64, error) {
	evs, err := s.store.Audit().ListEvents(ctx, storage.EventFilter{Limit: 1})
	if err != nil {
		return 0, fmt.Errorf("read head: %w", err)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	return evs[0].Seq, nil
}

// runSink is a sink's worker while this process delivers to it.
func (s *Service) runSink(ctx context.Context, w *sinkWorker) {
	var cursor int64
	for {
		var err error
		if cursor, err = s.sinkCursor(ctx, w); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("core: audit sink: cannot read its cursor", "sink", w.cfg.Name, "err", err)
		if !sleep(ctx, s.cfg.Audit.RetryMax) {
			return
		}
	}
	s.setState(w, SinkOK, nil, 0, cursor)
	defer func() { s.setState(w, SinkStandby, nil, 0, cursor) }()
	persisted := cursor
	poll := time.NewTicker(sinkPollInterval)
	defer poll.Stop()
	storeFailures := 0
	for {
		if persisted < cursor {
			if err := s.store.Audit().SetSinkCursor(ctx, w.cfg.Name, cursor); err == nil {
				persisted = cursor
			} else if ctx.Err() == nil {
				s.log.Warn("core: audit sink: cannot store its cursor", "sink", w.cfg.Name, "cursor", cursor, "err", err)
			}
		}
		if ctx.Err() != nil {
			s.flushSink(w, cursor, persisted)
			return
		}
		w.mu.Lock()
		rest := time.Until(w.openUntil)
		w.mu.Unlock()
		if rest > 0 {
			if !sleep(ctx, rest) {
				continue // the flush above
			}
		}
		evs, err := s.store.Audit().ReadEvents(ctx, cursor, sinkBatch)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			// Storage trouble is not the sink's: it moves no breaker.
			storeFailures++
			if storeFailures == 1 || storeFailures%10 == 0 { // not once per retry
				s.log.Warn("core: audit sink: cannot read events", "sink", w.cfg.Name, "failures", storeFailures, "err", err)
			}
			sleep(ctx, s.cfg.Audit.backoff(storeFailures))
			continue
		}
		storeFailures = 0
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
			case <-w.poke:
			case <-poll.C:
			}
			continue
		}
		err = s.deliver(ctx, w, evs)
		if err == nil {
			cursor = evs[len(evs)-1].Seq
			s.setState(w, SinkOK, nil, 0, cursor)
			continue
		}
		if ctx.Err() != nil {
			continue
		}
		w.mu.Lock()
		n := w.failures + 1
		w.mu.Unlock()
		if n >= s.cfg.Audit.BreakerFailures {
			w.mu.Lock()
			w.openUntil = time.Now().Add(s.cfg.Audit.BreakerCooldown)
			w.mu.Unlock()
			s.setState(w, SinkOpen, err, s.cfg.Audit.BreakerCooldown, cursor)
			continue
		}
		wait := s.cfg.Audit.backoff(n)
		s.setState(w, SinkRetrying, err, wait, cursor)
		sleep(ctx, wait)
	}
}

// flushSink makes one last pass at shutdown: what is pending goes out
// once, each call under the deadline and bounded by Close's context,
// without retries; the cursor is stored after each acknowledged batch.
func (s *Service) flushSink(w *sinkWorker, cursor, persisted int64) {
	ctx := s.finalContext()
	if ctx == nil {
		return // the lease was lost: the next holder delivers
	}
	if persisted < cursor {
		if err := s.store.Audit().SetSinkCursor(ctx, w.cfg.Name, cursor); err != nil {
			s.log.Warn("core: audit sink: cannot store its cursor", "sink", w.cfg.Name, "cursor", cursor, "err", err)
			return
		}
	}
	w.mu.Lock()
	open := w.state == SinkOpen
	w.mu.Unlock()
	if open {
		return
	}
	for ctx.Err() == nil {
		evs, err := s.store.Audit().ReadEvents(ctx, cursor, sinkBatch)
		if err != nil || len(evs) == 0 {
			return
		}
		if err := s.deliver(ctx, w, evs); err != nil {
			s.log.Warn("core: audit sink: final delivery failed; the events stay pending", "sink", w.cfg.Name, "error_kind", errKind(err), "err", err)
			return
		}
		cursor = evs[len(evs)-1].Seq
		if err := s.store.Audit().SetSinkCursor(ctx, w.cfg.Name, cursor); err != nil {
			s.log.Warn("core: audit sink: cannot store its cursor", "sink", w.cfg.Name, "cursor", cursor, "err", err)
			return
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// sinkStatus reports w; head is the newest stored Seq.
func (s *Service) sinkStatus(ctx context.Context, w *sinkWorker, head int64) (SinkStatus, error) {
	w.mu.Lock()
	st := SinkStatus{State: w.state, Required: w.cfg.Required, Failures: w.failures, LastError: w.lastErr}
	w.mu.Unlock()
	cur, err := s.store.Audit().SinkCursor(ctx, w.cfg.Name)
	if err != nil {
		return st, err
	}
	st.Cursor = cur
	if head > cur {
		st.LagEvents = head - cur
		next, err := s.store.Audit().ReadEvents(ctx, cur, 1)
		if err != nil {
			return st, err
		}
		if len(next) > 0 {
			st.LagAge = max(s.now().Sub(next[0].Time), 0)
		}
	}
	c := w.cfg
	st.LagExceeded = c.Required && ((c.MaxLagEvents > 0 && st.LagEvents > c.MaxLagEvents) ||
		(c.MaxLagAge > 0 && st.LagAge > c.MaxLagAge))
	return st, nil
}
