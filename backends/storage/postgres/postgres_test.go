package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/metacircular/mcias/internal/pgtest"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
	"github.com/metacircular/mcias/sdk/storage/storagetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openTemp opens a store on a fresh database.
func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	uri := pgtest.NewDatabase(t)
	s, err := open(t.Context(), uri, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.WithoutCancel(t.Context())) })
	return s, uri
}

func TestConformance(t *testing.T) {
	storagetest.RunTests(t, func(t *testing.T) storage.Store {
		s, _ := openTemp(t)
		return s
	})
}

func TestParseURI(t *testing.T) {
	for _, tc := range []struct {
		uri     string
		wantErr error
	}{
		{uri: "postgres://u:p@127.0.0.1:5432/mcias?sslmode=disable"},
		{uri: "postgresql://u@127.0.0.1/mcias"},
		{uri: "postgres://u@127.0.0.1/mcias?pool_max_conns=8"},
		{uri: "postgres://u@127.0.0.1/", wantErr: sdk.ErrInvalidArgument},
		{uri: "postgres:mcias", wantErr: sdk.ErrInvalidArgument},
		{uri: "sqlite:///x.db", wantErr: sdk.ErrInvalidArgument},
		{uri: "postgres://u@127.0.0.1/mcias?pool_max_conns=many", wantErr: sdk.ErrInvalidArgument},
		{uri: "postgres://u@127.0.0.1/mcias?sslmode=sometimes", wantErr: sdk.ErrInvalidArgument},
		{uri: "postgres://u@[::1/mcias", wantErr: sdk.ErrInvalidArgument},
		{uri: "", wantErr: sdk.ErrInvalidArgument},
	} {
		t.Run("case="+tc.uri, func(t *testing.T) {
			_, err := parseURI(tc.uri)
			if !errors.Is(err, tc.wantErr) && !(tc.wantErr == nil && err == nil) {
				t.Fatalf("parseURI(%q) err = %v, want %v", tc.uri, err, tc.wantErr)
			}
		})
	}
}

// TestErrorsCarryNoPassword: neither a bad URI nor a refused login puts
// the URI's password into an error.
func TestErrorsCarryNoPassword(t *testing.T) {
	const secret = "s3cr3t-pw"
	good := pgtest.NewDatabase(t)
	u, err := url.Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		uri     string
		wantErr error
	}{
		{"bad option", "postgres://mcias:" + secret + "@127.0.0.1/x?sslmode=sometimes", sdk.ErrInvalidArgument},
		{"unknown role", "postgres://nobody:" + secret + "@" + u.Host + u.Path + "?sslmode=disable", sdk.ErrUnavailable},
		{"closed port", "postgres://mcias:" + secret + "@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", sdk.ErrUnavailable},
	} {
		t.Run("case="+tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.uri, nil)
			if err == nil {
				s.Close(t.Context())
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error carries the password: %v", err)
			}
		})
	}
}

// TestConcurrentOpenMigratesOnce: nodes starting together on a fresh
// database all open it, and the schema is migrated exactly once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	uri := pgtest.NewDatabase(t)
	const nodes = 6
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() {
			s, err := Open(t.Context(), uri, nil)
			if err == nil {
				defer s.Close(t.Context())
				_, err = s.Info(t.Context())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var rows, maxV int
	if err := conn.QueryRow(t.Context(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&rows, &maxV); err != nil {
		t.Fatal(err)
	}
	if rows != len(ms) || maxV != len(ms) {
		t.Errorf("schema_migrations has %d rows up to %d; want %d", rows, maxV, len(ms))
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	s, uri := openTemp(t)
	if _, err := s.pool.Exec(t.Context(), `INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), uri, nil)
	if err == nil {
		s2.Close(t.Context())
	}
	if !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("Open on a newer schema = %v, want precondition", err)
	}
}

func TestInfoAndClosed(t *testing.T) {
	s, _ := openTemp(t)
	info, err := s.Info(t.Context())
	if err != nil || info.Name != Name || info.SchemaVersion < 1 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"ping":  s.Ping(t.Context()),
		"get":   func() error { _, err := s.Accounts().GetAccount(t.Context(), "x"); return err }(),
		"count": func() error { _, err := s.Accounts().CountAccounts(t.Context()); return err }(),
		"write": s.Audit().AppendEvent(t.Context(), audit.Event{ID: "e", Type: audit.LoginFailure}),
	} {
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want unavailable", name, err)
		}
	}
}

// TestServerGone: connections the server terminates under a running store
// make calls unavailable (never not-found or internal), and the store
// recovers on fresh connections without a restart.
func TestServerGone(t *testing.T) {
	s, uri := openTemp(t)
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(uri)
	u.Path = "/postgres"
	conn, err := pgx.Connect(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	db := strings.TrimPrefix(must(url.Parse(uri)).Path, "/")
	var killed int
	if err := conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1`, db).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("terminated %d connections: %v", killed, err)
	}
	// Terminated connections fail their next use; pgxpool drops them, so
	// calls either succeed on a new connection or say unavailable.
	for range 5 {
		_, err := s.Accounts().GetAccount(t.Context(), "no-such-id")
		if err != nil && !errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("after the server dropped the connections: %v", err)
		}
	}
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("the store did not recover on fresh connections: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"no rows", pgx.ErrNoRows, sdk.ErrNotFound},
		{"unique", &pgconn.PgError{Code: "23505"}, sdk.ErrConflict},
		{"foreign key", &pgconn.PgError{Code: "23503"}, sdk.ErrNotFound},
		{"check", &pgconn.PgError{Code: "23514"}, sdk.ErrInvalidArgument},
		{"nul in text", &pgconn.PgError{Code: "22021"}, sdk.ErrInvalidArgument},
		{"deadlock", &pgconn.PgError{Code: "40P01"}, sdk.ErrUnavailable},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, sdk.ErrUnavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, sdk.ErrUnavailable},
		{"bad password", &pgconn.PgError{Code: "28P01"}, sdk.ErrUnavailable},
		{"undefined table", &pgconn.PgError{Code: "42P01"}, sdk.ErrInternal},
		{"data corrupted", &pgconn.PgError{Code: "XX001"}, sdk.ErrInternal},
		{"canceled", context.Canceled, sdk.ErrUnavailable},
		{"eof", io.ErrUnexpectedEOF, sdk.ErrUnavailable},
		{"tx closed", pgx.ErrTxClosed, sdk.ErrUnavailable},
		{"already a kind", fmt.Errorf("x: %w", sdk.ErrConflict), sdk.ErrConflict},
		{"unknown", errors.New("something odd"), sdk.ErrInternal},
	} {
		t.Run("case="+tc.name, func(t *testing.T) {
			if got := classify(tc.err); !errors.Is(got, tc.want) || sdk.KindOf(got) != tc.want {
				t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
	if err := classify(context.DeadlineExceeded); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the context error is not kept matchable: %v", err)
	}
}
