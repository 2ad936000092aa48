package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one embedded schema step.
type migration struct {
	version int
	name    string
	sql     string
	// after, when set, runs in the migration's transaction after sql:
	// the steps SQL alone cannot do.
	after func(ctx context.Context, tx pgx.Tx) error
}

// afterSQL holds the Go steps of migrations, by version.
var afterSQL = map[int]func(ctx context.Context, tx pgx.Tx) error{
	3: fillChain,
}

// migrations returns the embedded migrations in version order. Files are
// named NNNN_description.sql; versions start at 1 and have no gaps.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		if !ok || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %q: name is not NNNN_description.sql", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("migration %q: bad version", name)
		}
		body, err := fs.ReadFile(migrationFS, "migrations/"+name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(body), after: afterSQL[v]})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %q: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// migrate applies every pending migration. It holds a session advisory
// lock for the whole run, so when several nodes start at once one
// migrates and the others wait, then find nothing left to do. Each step
// runs in its own transaction with its schema_migrations row (PostgreSQL
// DDL is transactional), so a failed step leaves the previous version.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w: %v", sdk.ErrInternal, err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", classify(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockMigrate); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", classify(err))
	}
	defer func() {
		// A lock that cannot be released (the connection broke) dies with
		// its session; destroy the connection so it is not reused.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockMigrate); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     NOT NULL PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("postgres: migrate: %w", classify(err))
	}
	current, err := schemaVersion(ctx, conn)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", classify(err))
	}
	if latest := len(ms); current > latest {
		// A newer binary migrated this database; running old code on it
		// could corrupt data it does not understand.
		return fmt.Errorf("postgres: migrate: %w: database schema version %d is newer than this server supports (%d)",
			sdk.ErrPrecondition, current, latest)
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("postgres: migrate %s: %w", m.name, classify(err))
		}
		_, err = tx.Exec(ctx, m.sql)
		if err == nil && m.after != nil {
			err = m.after(ctx, tx)
		}
		if err == nil {
			_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
		}
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return fmt.Errorf("postgres: migrate %s: %w", m.name, classify(err))
		}
		s.logger.Info("postgres: applied migration", "version", m.version, "name", m.name)
	}
	return nil
}

// schemaVersion returns the highest applied migration, 0 for none.
func schemaVersion(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}) (int, error) {
	var v *int
	if err := q.QueryRow(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, err
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// fillChain links the events stored before migration 3 into the audit
// chain, in seq order, as insertEvent links every later one.
func fillChain(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, selectEvent+` ORDER BY seq`)
	if err != nil {
		return err
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (audit.Event, error) { return scanEvent(r) })
	if err != nil {
		return err
	}
	prev := audit.GenesisHash()
	for _, ev := range events {
		hash := audit.ChainHash(prev, ev)
		if _, err := tx.Exec(ctx, `UPDATE audit_events SET prev_hash = $1, hash = $2 WHERE seq = $3`,
			prev, hash, ev.Seq); err != nil {
			return err
		}
		prev = hash
	}
	return nil
}
