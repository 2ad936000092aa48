// Package sqlite is the builtin SQLite storage backend of MCIAS, built on
// the pure-Go modernc.org/sqlite driver (no cgo).
//
// The database runs in WAL mode so readers never wait for the writer.
// Every write is one transaction begun with BEGIN IMMEDIATE: it takes the
// write lock up front, so a read-then-write inside it cannot fail later on
// a lock upgrade. Writers of one Store are also queued in-process, which
// spares them SQLite's sleep-and-poll busy handler; busy_timeout still
// covers writers in other processes. Reads are single statements outside
// any transaction and never take the write lock.
//
// Times are stored as unix nanoseconds (UTC) in INTEGER columns. The schema
// is created and upgraded by the versioned migrations embedded from
// migrations/*.sql, applied at Open.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

// Name is the backend name Info reports.
const Name = "sqlite"

// Scheme is the URI scheme this backend serves.
const Scheme = "sqlite"

// busyTimeout bounds how long a statement waits for a lock held by another
// connection (another process, or a reader checkpointing the WAL).
const busyTimeout = 5 * time.Second

// Store is a storage.Store backed by one SQLite database file.
type Store struct {
	db     *sql.DB
	path   string
	logger *slog.Logger

	// writeSlot queues this Store's write transactions (capacity 1), so
	// they wait in Go, honouring ctx, instead of polling SQLite's lock.
	writeSlot chan struct{}

	// Prepared hot-path reads.
	stmtGetAccount       *sql.Stmt
	stmtGetAccountByName *sql.Stmt
	stmtGetToken         *sql.Stmt
	stmtGetPGCreds       *sql.Stmt

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error

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
// *Store). It opens, creating if needed, the database named by uri,
// "sqlite:///abs/path.db" or "sqlite:rel/path.db", and applies pending
// migrations. A new database file is created with mode 0600; an existing
// one with looser permissions is tightened to 0600. Errors wrap
// sdk.ErrInvalidArgument for a bad URI or path, sdk.ErrUnavailable when
// the file cannot be opened, sdk.ErrPrecondition when the schema is newer
// than this code, and sdk.ErrInternal when the file is not a database.
func Open(ctx context.Context, uri string, logger *slog.Logger) (storage.Store, error) {
	s, err := open(ctx, uri, logger)
	if err != nil {
		// A nil interface, not one holding a nil *Store.
		return nil, err
	}
	return s, nil
}

// open is Open returning the concrete type, for this package's tests.
func open(ctx context.Context, uri string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	if err := prepareFile(path, logger); err != nil {
		return nil, err
	}

	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, classify(err))
	}
	s := &Store{
		db:        db,
		path:      path,
		logger:    logger,
		writeSlot: make(chan struct{}, 1),
		closed:    make(chan struct{}),
	}
	s.accounts = accountStore{s}
	s.tokens = tokenStore{s}
	s.credentials = credentialStore{s}
	s.audit = auditStore{s}

	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, classify(err))
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.prepare(ctx); err != nil {
		s.closeStmts()
		db.Close()
		return nil, err
	}
	return s, nil
}

// parseURI returns the database file path of a sqlite URI.
func parseURI(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("sqlite: parse uri: %w: not a URI", sdk.ErrInvalidArgument)
	}
	if u.Scheme != Scheme {
		return "", fmt.Errorf("sqlite: parse uri: %w: scheme %q is not %q", sdk.ErrInvalidArgument, u.Scheme, Scheme)
	}
	if u.User != nil || u.Host != "" {
		return "", fmt.Errorf("sqlite: parse uri: %w: a host is not allowed (use sqlite:///abs/path.db or sqlite:rel/path.db)", sdk.ErrInvalidArgument)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("sqlite: parse uri: %w: query parameters are not supported", sdk.ErrInvalidArgument)
	}
	path := u.Path
	if u.Opaque != "" {
		// sqlite:rel/path.db
		path, err = url.PathUnescape(u.Opaque)
		if err != nil {
			return "", fmt.Errorf("sqlite: parse uri: %w: bad escape in path", sdk.ErrInvalidArgument)
		}
	}
	if path == "" {
		return "", fmt.Errorf("sqlite: parse uri: %w: no database path", sdk.ErrInvalidArgument)
	}
	if strings.HasPrefix(path, ":") {
		return "", fmt.Errorf("sqlite: parse uri: %w: in-memory databases are not supported", sdk.ErrInvalidArgument)
	}
	if strings.HasSuffix(path, "/") {
		return "", fmt.Errorf("sqlite: parse uri: %w: path names a directory", sdk.ErrInvalidArgument)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlite: parse uri: %w: %v", sdk.ErrInvalidArgument, err)
	}
	return abs, nil
}

// prepareFile creates the database file with mode 0600 before SQLite opens
// it: SQLite would create it 0644 (less umask), and it gives the -wal and
// -shm files the mode of the database file.
func prepareFile(path string, logger *slog.Logger) error {
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case err != nil:
		return fmt.Errorf("sqlite: open %s: %w: directory %s: %v", path, sdk.ErrInvalidArgument, dir, errors.Unwrap(err))
	case !st.IsDir():
		return fmt.Errorf("sqlite: open %s: %w: %s is not a directory", path, sdk.ErrInvalidArgument, dir)
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return fmt.Errorf("sqlite: open %s: %w: not a regular file", path, sdk.ErrInvalidArgument)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("sqlite: open %s: %w: permission denied", path, sdk.ErrUnavailable)
		}
		return fmt.Errorf("sqlite: open %s: %w: %v", path, sdk.ErrUnavailable, errors.Unwrap(err))
	}
	defer f.Close()
	st, err = f.Stat()
	if err != nil {
		return fmt.Errorf("sqlite: open %s: %w: %v", path, sdk.ErrUnavailable, errors.Unwrap(err))
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("sqlite: open %s: %w: not a regular file", path, sdk.ErrInvalidArgument)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		// The file holds password hashes and sealed secrets.
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("sqlite: open %s: %w: cannot restrict mode %o to 0600: %v", path, sdk.ErrUnavailable, perm, errors.Unwrap(err))
		}
		logger.Warn("sqlite: database file was readable by others; restricted it to 0600", "path", path, "old_mode", fmt.Sprintf("%#o", perm))
	}
	return nil
}

// dsn builds the driver DSN: a SQLite file: URI (so any character in the
// path is escaped) with the pragmas every connection needs.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// FULL: an acknowledged revocation or audit event survives a power
	// loss too. NORMAL would save an fsync per commit but may roll back the
	// last commits, which an identity server cannot afford.
	q.Add("_pragma", "synchronous(FULL)")
	// Writes use BEGIN IMMEDIATE; read-only transactions stay deferred.
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// prepare prepares the statements of the hot read paths.
func (s *Store) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst   **sql.Stmt
		query string
	}{
		{&s.stmtGetAccount, selectAccount + ` WHERE a.id = ?`},
		{&s.stmtGetAccountByName, selectAccount + ` WHERE a.username = ? AND a.status != 'deleted'`},
		{&s.stmtGetToken, selectToken + ` WHERE jti = ?`},
		{&s.stmtGetPGCreds, selectPGCreds + ` WHERE account_id = ?`},
	} {
		st, err := s.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("sqlite: prepare: %w", classify(err))
		}
		*p.dst = st
	}
	return nil
}

func (s *Store) closeStmts() {
	for _, st := range []*sql.Stmt{s.stmtGetAccount, s.stmtGetAccountByName, s.stmtGetToken, s.stmtGetPGCreds} {
		if st != nil {
			st.Close()
		}
	}
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
	if err := s.check(); err != nil {
		return storage.Info{}, fmt.Errorf("sqlite: info: %w", err)
	}
	v, err := schemaVersion(ctx, s.db)
	if err != nil {
		return storage.Info{}, fmt.Errorf("sqlite: info: %w", classify(err))
	}
	return storage.Info{Name: Name, SchemaVersion: v}, nil
}

// Ping implements storage.Store: it runs a query, which proves the file
// is still readable, not merely that a connection exists.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		// Whatever stops a trivial query makes the store unavailable.
		return fmt.Errorf("sqlite: ping: %w: %v", sdk.ErrUnavailable, classify(err))
	}
	return nil
}

// Close implements storage.Store. It is idempotent; calls after Close
// fail with sdk.ErrUnavailable.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.closeStmts()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", classify(err))
		}
	})
	return s.closeErr
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

// write runs fn in one write transaction (BEGIN IMMEDIATE), committing when
// fn returns nil and rolling back otherwise. Errors are classified and
// prefixed with op.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	select {
	case s.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("sqlite: %s: %w", op, classify(ctx.Err()))
	case <-s.closed:
		return fmt.Errorf("sqlite: %s: %w", op, s.check())
	}
	defer func() { <-s.writeSlot }()

	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, classify(err))
	}
	return nil
}

// read checks the store is open before a read.
func (s *Store) read(op string) error {
	if err := s.check(); err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return nil
}

// nanos converts a time to the stored form; the zero time is 0.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Bounds of what UnixNano can represent (years 1678 to 2262).
var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// boundNanos converts a filter bound to the stored form. Outside the
// range UnixNano is undefined (it wraps), which would turn "since 2300"
// into "since 1700"; a bound beyond the range is clamped to it instead,
// which orders the same against every time that can be stored.
func boundNanos(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// fromNanos converts the stored form back; 0 is the zero time.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// orNow returns t, or the current time when t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().UTC()
	}
	return t
}
