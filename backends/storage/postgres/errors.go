package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/metacircular/mcias/sdk"
)

// codeKinds maps SQLSTATE codes to sdk error kinds; classKinds maps the
// two-character classes of codes not listed. Appendix A of the
// PostgreSQL manual lists them.
var (
	codeKinds = map[string]error{
		"23505": sdk.ErrConflict,        // unique_violation
		"23503": sdk.ErrNotFound,        // foreign_key_violation: no such account
		"23514": sdk.ErrInvalidArgument, // check_violation
		"23502": sdk.ErrInvalidArgument, // not_null_violation
		// Transient: nothing was committed, a later attempt may pass.
		"40001": sdk.ErrUnavailable, // serialization_failure
		"40P01": sdk.ErrUnavailable, // deadlock_detected
		"55P03": sdk.ErrUnavailable, // lock_not_available
		"3D000": sdk.ErrUnavailable, // invalid_catalog_name: the database is gone
		"25006": sdk.ErrUnavailable, // read_only_sql_transaction: a standby
	}
	classKinds = map[string]error{
		"22": sdk.ErrInvalidArgument, // data exception (a NUL in text, out of range)
		"08": sdk.ErrUnavailable,     // connection exception
		"28": sdk.ErrUnavailable,     // invalid authorization: the operator must fix the login
		"53": sdk.ErrUnavailable,     // insufficient resources (disk full, too many connections)
		"57": sdk.ErrUnavailable,     // operator intervention (shutdown, query cancelled)
		"58": sdk.ErrUnavailable,     // system error (I/O)
		"XX": sdk.ErrInternal,        // internal error (data corrupted)
	}
)

// classify is the one place where pgx and server errors become sdk error
// kinds. An error that already wraps a kind is returned as is. The driver
// error is kept as text only (not wrapped), so callers can test the kind
// but never depend on the driver; a server error's text is its message,
// never the statement or its arguments.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range sdk.Kinds {
		if errors.Is(err, k) {
			return err
		}
	}
	var (
		pe *pgconn.PgError
		ce *pgconn.ConnectError
	)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return sdk.ErrNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Keep the context error matchable: the caller gave up.
		return fmt.Errorf("%w: %w", sdk.ErrUnavailable, err)
	case errors.As(err, &ce):
		// Whatever refused the connection (server down, too many
		// clients, the database not accepting connections, a bad
		// password), nothing ran: the store cannot serve now.
		return fmt.Errorf("%w: %v", sdk.ErrUnavailable, err)
	case errors.As(err, &pe):
		kind, ok := codeKinds[pe.Code]
		if !ok && len(pe.Code) == 5 {
			kind, ok = classKinds[pe.Code[:2]]
		}
		if !ok {
			// Syntax errors, undefined tables and the like: a bug or a
			// schema that is not ours.
			kind = sdk.ErrInternal
		}
		return fmt.Errorf("%w: %s (SQLSTATE %s)", kind, pe.Message, pe.Code)
	case pgconn.Timeout(err), pgconn.SafeToRetry(err), errors.Is(err, pgx.ErrTxClosed),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: %v", sdk.ErrUnavailable, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: %v", sdk.ErrUnavailable, err)
	}
	if err.Error() == "closed pool" {
		// pgxpool has no exported value for this one.
		return fmt.Errorf("%w: %v", sdk.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %v", sdk.ErrInternal, err)
}
