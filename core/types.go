package core

import (
	"time"

	"github.com/metacircular/mcias/core/pluginhost"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// Caller is who asks, as the frontend saw it. Principal is nil for an
// anonymous caller (login, validate).
type Caller struct {
	Principal *Principal
	IP        string
	RequestID string
}

// Principal is the account behind a valid bearer token.
type Principal struct {
	AccountID   string
	Username    string
	AccountType storage.AccountType
	Roles       []string
	JTI         string
	ExpiresAt   time.Time
}

// IsAdmin reports whether the principal holds the role "admin".
func (p *Principal) IsAdmin() bool {
	if p == nil {
		return false
	}
	for _, r := range p.Roles {
		if r == RoleAdmin {
			return true
		}
	}
	return false
}

// RoleAdmin is the one role the server gives meaning to.
const RoleAdmin = "admin"

// Account is the client-visible view of an account: no hash, no secret.
type Account struct {
	ID          string
	Username    string
	Type        storage.AccountType
	Status      storage.AccountStatus
	TOTPEnabled bool
	Roles       []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// IssuedToken is a freshly signed token.
type IssuedToken struct {
	Token     string
	JTI       string
	ExpiresAt time.Time
}

// Validation is the result of validating a token for a relying party.
type Validation struct {
	Valid       bool
	Sub         string
	Username    string
	AccountType storage.AccountType
	Roles       []string
	ExpiresAt   time.Time
	JTI         string
}

// NewAccount is a request to create an account.
type NewAccount struct {
	Username string
	Type     storage.AccountType
	Password string // required for human accounts, optional for system
}

// AccountUpdate is a partial update; nil fields are left alone.
type AccountUpdate struct {
	Status *storage.AccountStatus // Active or Inactive
}

// AccountQuery selects accounts to list.
type AccountQuery struct {
	Type   storage.AccountType
	Status storage.AccountStatus
	Role   string
	Limit  int    // 1..500, 0 means 100
	Cursor string // opaque, from AccountPage.NextCursor
}

// AccountPage is one page of accounts.
type AccountPage struct {
	Accounts   []Account
	NextCursor string // empty on the last page
}

// TOTPEnrollment is returned once, at enrollment.
type TOTPEnrollment struct {
	Secret     string // base32, no padding
	OTPAuthURI string
}

// PGCreds is a Postgres credential in clear, as an admin reads or writes it.
type PGCreds struct {
	Host     string
	Port     int
	Database string
	Username string
	Password string
}

// AuditQuery selects audit events to list.
type AuditQuery struct {
	Type      audit.Type
	AccountID string
	Since     time.Time
	Limit     int    // 1..500, 0 means 100
	Cursor    string // opaque, from AuditPage.NextCursor
}

// AuditPage is one page of audit events, newest first.
type AuditPage struct {
	Events     []audit.Event
	NextCursor string
}

// BackendState is one backend's health as readiness reports it.
type BackendState struct {
	Name  string // backend name ("sqlite", "local", "file")
	Up    bool
	Error string // short, client-safe reason when down
	// Plugin is set when the backend runs as a supervised subprocess.
	Plugin *pluginhost.Status
	// Sink is set for audit sinks: their delivery state and lag.
	Sink *SinkStatus
}

// Readiness reports every backend. Ready is true when storage and custody
// are up and no required audit sink lags beyond its bound; other sink
// trouble shows in its BackendState but does not make the service unready.
type Readiness struct {
	Ready    bool
	Backends map[string]BackendState // keyed by role: "storage", "custody", "audit:<name>"
}
