package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/metacircular/mcias/sdk"
)

// codeKinds maps SQLite result codes to sdk error kinds. Extended codes
// are looked up first, then their primary code (the low byte).
var codeKinds = map[int]error{
	sqlite3.SQLITE_CONSTRAINT_UNIQUE:     sdk.ErrConflict,
	sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY: sdk.ErrConflict,
	sqlite3.SQLITE_CONSTRAINT_ROWID:      sdk.ErrConflict,
	// A foreign key names an account that does not exist.
	sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY: sdk.ErrNotFound,
	sqlite3.SQLITE_CONSTRAINT_CHECK:      sdk.ErrInvalidArgument,
	sqlite3.SQLITE_CONSTRAINT_NOTNULL:    sdk.ErrInvalidArgument,
	sqlite3.SQLITE_CONSTRAINT_DATATYPE:   sdk.ErrInvalidArgument,
	sqlite3.SQLITE_CONSTRAINT:            sdk.ErrConflict,
	sqlite3.SQLITE_TOOBIG:                sdk.ErrInvalidArgument,
	sqlite3.SQLITE_MISMATCH:              sdk.ErrInvalidArgument,
	// Transient: another connection holds a lock, or the disk is in
	// trouble. Nothing was committed.
	sqlite3.SQLITE_BUSY:      sdk.ErrUnavailable,
	sqlite3.SQLITE_LOCKED:    sdk.ErrUnavailable,
	sqlite3.SQLITE_INTERRUPT: sdk.ErrUnavailable,
	sqlite3.SQLITE_IOERR:     sdk.ErrUnavailable,
	sqlite3.SQLITE_FULL:      sdk.ErrUnavailable,
	sqlite3.SQLITE_CANTOPEN:  sdk.ErrUnavailable,
	sqlite3.SQLITE_READONLY:  sdk.ErrUnavailable,
	sqlite3.SQLITE_PERM:      sdk.ErrUnavailable,
	sqlite3.SQLITE_AUTH:      sdk.ErrUnavailable,
	sqlite3.SQLITE_PROTOCOL:  sdk.ErrUnavailable,
	sqlite3.SQLITE_NOMEM:     sdk.ErrUnavailable,
	// The file is not what we expect: needs an operator, not a retry.
	sqlite3.SQLITE_CORRUPT: sdk.ErrInternal,
	sqlite3.SQLITE_NOTADB:  sdk.ErrInternal,
}

// classify is the one place where driver and database/sql errors become
// sdk error kinds. An error that already wraps a kind is returned as is.
// The driver error is kept as text only (not wrapped), so callers can test
// the kind but never depend on the driver.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, k := range sdk.Kinds {
		if errors.Is(err, k) {
			return err
		}
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return sdk.ErrNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Keep the context error matchable: the caller gave up, nothing
		// was committed.
		return fmt.Errorf("%w: %w", sdk.ErrUnavailable, err)
	case errors.Is(err, sql.ErrConnDone), errors.Is(err, sql.ErrTxDone):
		return fmt.Errorf("%w: %v", sdk.ErrUnavailable, err)
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		code := se.Code()
		kind, ok := codeKinds[code]
		if !ok {
			kind, ok = codeKinds[code&0xff]
		}
		if !ok {
			kind = sdk.ErrInternal
		}
		return fmt.Errorf("%w: %v", kind, se)
	}
	if err.Error() == "sql: database is closed" {
		// database/sql has no exported value for this one.
		return fmt.Errorf("%w: %v", sdk.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %v", sdk.ErrInternal, err)
}
