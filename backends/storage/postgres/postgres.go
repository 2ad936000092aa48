// Package postgres is the builtin PostgreSQL storage backend of MCIAS, built
// on jackc/pgx/v5 and its connection pool. Several MCIAS nodes may share one
// database.
//
// Every write is one transaction that first takes a transaction-scoped
// advisory lock (the store's write lock, per database). Writes therefore
// commit one at a time across every node, which buys three things the
// contract needs without SERIALIZABLE retries: audit Seq order is commit
// order, guards that span rows (the last active admin) see every committed
// change, and a version check and its update cannot interleave. Every
// statement inside is short (a handful of indexed rows), so the lock is
// held for about a millisecond. Reads are single statements outside any
// transaction and never take it.
//
// Every query is parameterised. Times are timestamptz (microseconds); the
// schema is created and upgraded by the versioned migrations embedded from
// migrations/*.sql, applied at Open under a session advisory lock, so
// nodes starting together migrate once.
package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

// Name is the backend name Info reports.
const Name = "postgres"

// Scheme is the URI scheme this backend serves.
const Scheme = "postgres"

// Advisory lock keys (per database). Arbitrary constants; "mcias" in ASCII
// in the high bytes keeps them clear of other users of one database.
const (
	lockMigrate int64 = 0x6d63696173_000001
	lockWrite   int64 = 0x6d63696173_000002
)

// Store is a storage.Store backed by a PostgreSQL database.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	closeOnce sync.Once
	closed    chan struct{}

	// nextPrune is when TakeLoginAttempt next prunes full buckets (unix
	// ns of the callers' clock).
	nextPrune atomic.Int64

	accounts    accountStore
	tokens      tokenStore
	credentials credentialStore
	audit       auditStore
}

var (
	_ storage.Store   = (*Store)(nil)
	_ storage.Factory = Open
)

// Open is the storage.Factory of this backend (the returned Store is a
// *Store). uri is a libpq URI, "postgres://user:pass@host:port/db?...",
// with pgx's options (sslmode, pool_max_conns, ...). It connects and
// applies pending migrations. Errors wrap sdk.ErrInvalidArgument for a bad
// URI, sdk.ErrUnavailable when the server cannot be reached or refuses the
// login, and sdk.ErrPrecondition when the schema is newer than this code.
// No error carries the URI's password.
func Open(ctx context.Context, uri string, logger *slog.Logger) (storage.Store, error) {
	s, err := open(ctx, uri, logger)
	if err != nil {
		// A nil interface, not one holding a nil *Store.
		return nil, err
	}
	return s, nil
}

func open(ctx context.Context, uri string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", classify(err))
	}
	s := &Store{pool: pool, logger: logger, closed: make(chan struct{})}
	s.accounts = accountStore{s}
	s.tokens = tokenStore{s}
	s.credentials = credentialStore{s}
	s.audit = auditStore{s}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open %s: %w", describe(cfg), classify(err))
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// parseURI checks the scheme and hands the rest to pgx. pgx's own message
// is left out: for a malformed URI it cannot promise to redact the
// password.
func parseURI(uri string) (*pgxpool.Config, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse uri: %w: not a URI", sdk.ErrInvalidArgument)
	}
	if u.Scheme != Scheme && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("postgres: parse uri: %w: scheme %q is not %q", sdk.ErrInvalidArgument, u.Scheme, Scheme)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("postgres: parse uri: %w: want postgres://[user[:password]@]host[:port]/database", sdk.ErrInvalidArgument)
	}
	cfg, err := pgxpool.ParseConfig(uri)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse uri: %w: not a valid postgres URI", sdk.ErrInvalidArgument)
	}
	if cfg.ConnConfig.Database == "" {
		return nil, fmt.Errorf("postgres: parse uri: %w: no database name", sdk.ErrInvalidArgument)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "mcias"
	}
	return cfg, nil
}

// describe names the database for messages: host, port and database,
// never the user's password.
func describe(cfg *pgxpool.Config) string {
	return fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
}

// Accounts implements storage.Store.
func (s *Store) Accounts() storage.AccountStore { return s.accounts }

// Tokens implements storage.Store.
func (s *Store) Tokens() storage.TokenStore { return s.tokens }

// Credentials implements storage.Store.
func (s *Store) Credentials() storage.CredentialStore { return s.credentials }

// Audit implements storage.Store.
func (s *Store) Audit() storage.AuditStore { return s.audit }

// Info implements storage.Store.
func (s *Store) Info(ctx context.Context) (storage.Info, error) {
	if err := s.read("info"); err != nil {
		return storage.Info{}, err
	}
	v, err := schemaVersion(ctx, s.pool)
	if err != nil {
		return storage.Info{}, fmt.Errorf("postgres: info: %w", classify(err))
	}
	return storage.Info{Name: Name, SchemaVersion: v}, nil
}

// Ping implements storage.Store: it runs a query, which proves the server
// answers, not merely that a pooled connection exists.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.read("ping"); err != nil {
		return err
	}
	var one int
	if err := s.pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		// Whatever stops a trivial query makes the store unavailable.
		return fmt.Errorf("postgres: ping: %w: %v", sdk.ErrUnavailable, classify(err))
	}
	return nil
}

// Close implements storage.Store. It is idempotent; calls after Close fail
// with sdk.ErrUnavailable.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.pool.Close()
	})
	return nil
}

// check fails once the store is closed.
func (s *Store) check() error {
	select {
	case <-s.closed:
		return fmt.Errorf("%w: store is closed", sdk.ErrUnavailable)
	default:
		return nil
	}
}

// read checks the store is open before a read.
func (s *Store) read(op string) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return nil
}

// write runs fn in one transaction holding the write lock, committing when
// fn returns nil and rolling back otherwise. Errors are classified and
// prefixed with op.
func (s *Store) write(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	// Rollback after Commit is a no-op; it releases the connection on
	// every error path. Its context must outlive a cancelled ctx.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockWrite); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	if err := fn(tx); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, classify(err))
	}
	return nil
}

// utc returns t in UTC (pgx hands out local times).
func utc(t time.Time) time.Time { return t.UTC() }

// Filter bounds are clamped to what timestamptz holds (4713 BC to
// 294276 AD, here a little inside), so "since the year 300000" orders
// after every stored time instead of failing.
var (
	minBound = time.Date(-4000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxBound = time.Date(200000, 1, 1, 0, 0, 0, 0, time.UTC)
)

func bound(t time.Time) time.Time {
	switch {
	case t.Before(minBound):
		return minBound
	case t.After(maxBound):
		return maxBound
	}
	return t
}

// orNow returns t, or the current time when t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().UTC()
	}
	return t
}
