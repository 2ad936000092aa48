package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

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
	after func(ctx context.Context, tx *sql.Tx) error
}

// afterSQL holds the Go steps of migrations, by version.
var afterSQL = map[int]func(ctx context.Context, tx *sql.Tx) error{
	3: fillChain,
}

// migrations returns the embedded migrations in version order. Files are
// named NNNN_description.sql; versions start at 1 and have no gaps, so a
// missing file is caught by the tests rather than skipped in production.
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

// migrate applies every pending migration, each in its own write
// transaction together with its schema_migrations row, so a failed step
// leaves the schema at the previous version. Two processes opening the
// same file at once serialise on BEGIN IMMEDIATE and the second sees the
// step already applied.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w: %v", sdk.ErrInternal, err)
	}
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", classify(err))
	}
	current, err := schemaVersion(ctx, s.db)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", classify(err))
	}
	if latest := len(ms); current > latest {
		// A newer binary migrated this file; running old code on it could
		// corrupt data it does not understand.
		return fmt.Errorf("sqlite: migrate: %w: database schema version %d is newer than this server supports (%d)",
			sdk.ErrPrecondition, current, latest)
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		err := s.write(ctx, "migrate "+m.name, func(tx *sql.Tx) error {
			var applied bool
			if err := tx.QueryRowContext(ctx,
				`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`, m.version,
			).Scan(&applied); err != nil {
				return err
			}
			if applied {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			if m.after != nil {
				if err := m.after(ctx, tx); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return err
		}
		s.logger.Info("sqlite: applied migration", "version", m.version, "name", m.name)
	}
	return nil
}

// schemaVersion returns the highest applied migration, 0 for none.
func schemaVersion(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, err
	}
	return int(v.Int64), nil
}

// fillChain links the events stored before migration 3 into the audit
// chain, in seq order, as insertEvent links every later one.
func fillChain(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, selectEvent+` ORDER BY seq`)
	if err != nil {
		return err
	}
	var events []audit.Event
	for rows.Next() {
		ev, err := scanEvent(rows)
		if err != nil {
			rows.Close()
			return err
		}
		events = append(events, ev)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	prev := audit.GenesisHash()
	for _, ev := range events {
		hash := audit.ChainHash(prev, ev)
		if _, err := tx.ExecContext(ctx, `UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?`,
			prev, hash, ev.Seq); err != nil {
			return err
		}
		prev = hash
	}
	return nil
}
