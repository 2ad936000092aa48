package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/metacircular/mcias/core/password"
	"github.com/metacircular/mcias/core/pluginhost"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/storage"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultTokenTTL           = time.Hour
	DefaultServiceTokenTTL    = 24 * time.Hour
	DefaultMaxServiceTokenTTL = 90 * 24 * time.Hour
	DefaultLeeway             = 30 * time.Second
	DefaultMinPasswordLength  = 12
	// MaxPasswordBytes bounds every password: Argon2id hashes any length,
	// but a megabyte password is an attack on the request path, not a
	// secret.
	MaxPasswordBytes = 1024
)

// Timings of the background work. Variables, not constants, only so the
// numbers live in one place; nothing changes them at run time.
var (
	// refreshInterval: how often keys are re-read and the revocation
	// feed is followed, which bounds how long a change made by another
	// process takes to be seen here.
	refreshInterval = time.Minute
	// unknownKIDInterval rate-limits key refreshes caused by tokens with
	// an unknown kid, so garbage tokens cannot hammer the custodian.
	unknownKIDInterval = 10 * time.Second
	// sinkPollInterval: sinks are poked after each local commit; the poll
	// also catches events written by other processes.
	sinkPollInterval = 5 * time.Second
	// feedOverlap re-reads a little of the revocation feed each time, so
	// a revocation committed with a slightly older timestamp is not lost.
	feedOverlap = 2 * time.Minute
)

// Config is the core's configuration.
type Config struct {
	Issuer             string        // iss; required
	TokenTTL           time.Duration // session tokens; default 1h
	ServiceTokenTTL    time.Duration // default for service tokens; default 24h
	MaxServiceTokenTTL time.Duration // cap; default 90*24h
	Leeway             time.Duration // nbf/iat/exp leeway; default 30s
	Password           password.Params
	// MaxConcurrentHashes bounds concurrent Argon2id runs (and so their
	// memory); default runtime.NumCPU().
	MaxConcurrentHashes int
	MinPasswordLength   int // default 12; max length 1024 bytes always

	// Key rotation (see rotation.go); used only with a custodian that
	// rotates.
	RotateEvery  time.Duration // scheduled rotation period; 0: on demand only
	PublishAhead time.Duration // a next key is published this long before it signs; default 2m
	RetireAfter  time.Duration // a retiring key stays published this long; default and minimum: longest token life

	// Audit delivery to sinks and checkpoints (see delivery.go,
	// checkpoint.go).
	Audit AuditDelivery
	// LeaseTTL is how long a storage lease (lease.go) lasts unrenewed;
	// default 30s. Used only with a store that offers storage.Leaser.
	LeaseTTL time.Duration
}

// Deps are the backends and helpers the core runs on. The core does not
// own the backends: Close leaves them open.
type Deps struct {
	Store     storage.Store
	Custodian custody.Custodian
	Sinks     []SinkConfig
	Logger    *slog.Logger
	Now       func() time.Time
}

// Service is the MCIAS core. It is safe for concurrent use.
type Service struct {
	cfg    Config
	store  storage.Store
	cust   custody.Custodian
	log    *slog.Logger
	now    func() time.Time
	hasher *password.Hasher
	parser *jwt.Parser

	keys     keyCache
	tokens   tokenCache
	accounts accountCache
	rot      rotationState

	feedMu     sync.Mutex
	feedCursor time.Time // RevokedAfter of the next revocation-feed read

	sinks []*sinkWorker
	// holder names this process in storage leases.
	holder string
	// cpMu serialises checkpoints; cpHeld: this process holds the
	// checkpoint lease (or there are no leases).
	cpMu   sync.Mutex
	cpHeld atomic.Bool

	// finalCtx is Close's context, set just before the background work
	// is told to stop: the work that then runs once more (the last sink
	// flush, lease releases) is bounded by it. Nil while running.
	finalMu  sync.Mutex
	finalCtx context.Context

	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

func (c *Config) applyDefaults() error {
	if c.Issuer == "" {
		return errors.New("core: config: issuer is required")
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.ServiceTokenTTL == 0 {
		c.ServiceTokenTTL = DefaultServiceTokenTTL
	}
	if c.MaxServiceTokenTTL == 0 {
		c.MaxServiceTokenTTL = DefaultMaxServiceTokenTTL
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.Password == (password.Params{}) {
		c.Password = password.DefaultParams()
	}
	if c.MaxConcurrentHashes == 0 {
		c.MaxConcurrentHashes = runtime.NumCPU()
	}
	if c.MinPasswordLength == 0 {
		c.MinPasswordLength = DefaultMinPasswordLength
	}
	switch {
	case c.TokenTTL < time.Second:
		return fmt.Errorf("core: config: token ttl %s is below one second", c.TokenTTL)
	case c.ServiceTokenTTL < time.Second:
		return fmt.Errorf("core: config: service token ttl %s is below one second", c.ServiceTokenTTL)
	case c.MaxServiceTokenTTL < c.ServiceTokenTTL:
		return fmt.Errorf("core: config: max service token ttl %s is below the default %s", c.MaxServiceTokenTTL, c.ServiceTokenTTL)
	case c.Leeway < 0 || c.Leeway > 5*time.Minute:
		return fmt.Errorf("core: config: leeway %s must be between 0 and 5m", c.Leeway)
	case c.MaxConcurrentHashes < 1:
		return fmt.Errorf("core: config: max concurrent hashes %d must be at least 1", c.MaxConcurrentHashes)
	case c.MinPasswordLength < 1 || c.MinPasswordLength > MaxPasswordBytes:
		return fmt.Errorf("core: config: min password length %d must be between 1 and %d", c.MinPasswordLength, MaxPasswordBytes)
	}
	if err := c.Password.Validate(); err != nil {
		return fmt.Errorf("core: config: password params: %w", err)
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.LeaseTTL < 3*time.Millisecond {
		return fmt.Errorf("core: config: lease ttl %s is too short", c.LeaseTTL)
	}
	if err := c.Audit.applyDefaults(); err != nil {
		return err
	}
	return c.rotationDefaults()
}

// New builds the service: it loads the signing keys, the state of every
// unexpired token and the audit cursor, then starts the background work.
// It fails when a backend cannot serve those first reads.
func New(ctx context.Context, cfg Config, d Deps) (*Service, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Custodian == nil {
		return nil, errors.New("core: new: a store and a custodian are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Service{
		cfg:    cfg,
		store:  d.Store,
		cust:   d.Custodian,
		log:    d.Logger,
		now:    d.Now,
		hasher: password.NewHasher(cfg.Password, cfg.MaxConcurrentHashes),
		holder: uuid.NewString(),
	}
	s.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(s.now),
		jwt.WithStrictDecoding(),
	)
	s.tokens.init()
	s.accounts.init()

	if err := s.refreshKeys(ctx); err != nil {
		return nil, fmt.Errorf("core: new: %w", err)
	}
	now := s.now()
	// Every unexpired token, revoked or not: a token this process has
	// never seen costs one storage read the first time it is presented,
	// so loading them all keeps the hot path free of backend calls after
	// a restart.
	live, err := s.store.Tokens().ListTokens(ctx, storage.TokenFilter{ExpiresAfter: now})
	if err != nil {
		return nil, fmt.Errorf("core: new: load tokens: %w", err)
	}
	for _, t := range live {
		s.tokens.merge(t)
	}
	s.feedCursor = now

	if s.sinks, err = sinkWorkers(ctx, d.Sinks); err != nil {
		return nil, err
	}

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stop = cancel
	s.wg.Add(1)
	go s.refreshLoop(bg)
	if feed, ok := s.store.(storage.ChangeFeed); ok {
		s.wg.Add(1)
		go s.followChanges(bg, feed)
	}
	if _, err := s.rotator(ctx); err == nil {
		s.wg.Go(func() { s.leased(bg, leaseRotation, nil, s.rotationLoop) })
	}
	if s.cfg.Audit.CheckpointEvery > 0 {
		s.wg.Go(func() { s.leased(bg, leaseCheckpoint, &s.cpHeld, s.checkpointLoop) })
	}
	for _, w := range s.sinks {
		s.wg.Go(func() { s.leased(bg, leaseSinkPrefix+w.cfg.Name, nil, func(ctx context.Context) { s.runSink(ctx, w) }) })
	}
	return s, nil
}

// Close stops the background work. Before, it writes a last checkpoint
// if the head moved (on the node that checkpoints); after, each sink this
// process delivers to gets one last attempt at what is pending, bounded by
// ctx (by the delivery deadline when ctx has none). It does not close the
// backends; their owner does.
func (s *Service) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		// The last checkpoint and flush are best effort: what is left
		// stays stored and goes out from the stored cursor later.
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.Audit.DeliverTimeout)
			defer cancel()
		}
		if s.cfg.Audit.CheckpointEvery > 0 && s.cpHeld.Load() {
			if _, cerr := s.Checkpoint(ctx); cerr != nil {
				s.log.Warn("core: final audit checkpoint failed", "err", cerr)
			}
		}
		s.finalMu.Lock()
		s.finalCtx = ctx
		s.finalMu.Unlock()
		s.stop()
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("core: close: %w", ctx.Err())
		}
	})
	return err
}

// finalContext is Close's context once Close has begun, else nil.
func (s *Service) finalContext() context.Context {
	s.finalMu.Lock()
	defer s.finalMu.Unlock()
	return s.finalCtx
}

// Ready reports whether every backend can serve calls now. Error strings
// are the sdk kind only, so they are safe to show.
func (s *Service) Ready(ctx context.Context) Readiness {
	r := Readiness{Ready: true, Backends: map[string]BackendState{}}
	set := func(role string, backend any, st BackendState) {
		if p, ok := backend.(interface{ PluginStatus() pluginhost.Status }); ok {
			ps := p.PluginStatus()
			st.Plugin = &ps
		}
		if !st.Up {
			r.Ready = false
		}
		r.Backends[role] = st
	}

	st := BackendState{Name: "storage", Up: true}
	if info, err := s.store.Info(ctx); err == nil && info.Name != "" {
		st.Name = info.Name
	}
	if err := s.store.Ping(ctx); err != nil {
		st.Up, st.Error = false, "storage "+sdk.KindOf(err).Error()
	}
	set("storage", s.store, st)

	st = BackendState{Name: "custody", Up: true}
	if info, err := s.cust.Info(ctx); err != nil {
		st.Up, st.Error = false, "custody "+sdk.KindOf(err).Error()
	} else if info.Name != "" {
		st.Name = info.Name
	}
	set("custody", s.cust, st)

	var head int64
	var headErr error
	if len(s.sinks) > 0 {
		head, headErr = s.headSeq(ctx)
	}
	for _, w := range s.sinks {
		st := BackendState{Name: w.kind, Up: true}
		ss, err := s.sinkStatus(ctx, w, head)
		if err = errors.Join(headErr, err); err != nil {
			// Storage is down and says so above; the lag is unknown.
			ss.LastError = "storage " + sdk.KindOf(err).Error()
		}
		st.Sink = &ss
		switch {
		case ss.LagExceeded:
			st.Up, st.Error = false, "audit sink lags beyond its bound"
		case ss.State == SinkRetrying || ss.State == SinkOpen:
			st.Up, st.Error = false, "audit sink "+ss.LastError
		}
		// Only a required sink beyond its bound holds readiness down;
		// any other sink trouble is reported, not fatal.
		if p, ok := w.cfg.Sink.(interface{ PluginStatus() pluginhost.Status }); ok {
			ps := p.PluginStatus()
			st.Plugin = &ps
		}
		if ss.LagExceeded {
			r.Ready = false
		}
		r.Backends["audit:"+w.cfg.Name] = st
	}
	return r
}

// refreshLoop keeps the caches in step with changes made elsewhere (key
// rotation, revocations by another process) and drops expired entries.
func (s *Service) refreshLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.refreshKeys(ctx); err != nil {
			s.log.Warn("core: refresh signing keys", "err", err)
		}
		if err := s.followRevocations(ctx); err != nil {
			s.log.Warn("core: follow revocation feed", "err", err)
		}
		s.tokens.prune(s.now())
	}
}

// followRevocations reads tokens revoked since the last read (by any
// process) and marks them dead here; the accounts they belong to are
// re-read, since a disable or delete elsewhere revokes their tokens too.
func (s *Service) followRevocations(ctx context.Context) error {
	s.feedMu.Lock()
	defer s.feedMu.Unlock()
	now := s.now()
	revoked, err := s.store.Tokens().ListTokens(ctx, storage.TokenFilter{
		RevokedOnly:  true,
		RevokedAfter: s.feedCursor.Add(-feedOverlap),
		ExpiresAfter: now,
	})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, t := range revoked {
		s.tokens.merge(t)
		seen[t.AccountID] = true
	}
	for id := range seen {
		if !s.accounts.has(id) {
			continue
		}
		a, err := s.store.Accounts().GetAccount(ctx, id)
		if err != nil {
			return err
		}
		s.accounts.put(a)
	}
	s.feedCursor = now
	return nil
}

// afterAccountWrite brings the caches up to date after this process
// committed an account update with opts.
func (s *Service) afterAccountWrite(ctx context.Context, a storage.Account, opts storage.UpdateOptions) {
	s.accounts.put(a)
	if opts.RevokeTokens {
		// Marking in memory cannot fail, so the tokens are dead here
		// even if the re-read below does. Every token this process
		// issued was cached before its record was committed, and a token
		// not cached is read from storage (where it is revoked) on first
		// use.
		s.tokens.revokeAccount(a.ID, opts.KeepJTI)
		revoked, err := s.store.Tokens().ListTokens(ctx, storage.TokenFilter{
			AccountID: a.ID, RevokedOnly: true, ExpiresAfter: s.now(),
		})
		if err != nil {
			s.log.Warn("core: refresh revoked tokens", "account_id", a.ID, "err", err)
		}
		for _, t := range revoked {
			s.tokens.merge(t)
		}
	}
	s.pokeSinks()
}
