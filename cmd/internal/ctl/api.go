package ctl

import "context"

// API is what the commands need from a server, one method per operation
// of the contract. Client (REST) and GRPCClient implement it, so every
// command, flag, prompt and output format exists once for both CLIs.
//
// Each call returns the decoded answer and Raw, the answer as JSON for
// -json: REST's body unchanged, gRPC's response message in protojson
// with the proto field names (which are the REST names). Failures are an
// *APIError (the server answered), a *TransportError (no answer), or
// errNoToken (a call that needs a token and has none).
type API interface {
	Health(ctx context.Context) (healthStatus, Raw, error)
	// Ready returns the report whether or not the server is ready; the
	// caller reads its Status.
	Ready(ctx context.Context) (readiness, Raw, error)
	PublicKey(ctx context.Context) (jwk, Raw, error)
	JWKS(ctx context.Context) (jwks, Raw, error)

	Login(ctx context.Context, req loginRequest) (tokenResponse, Raw, error)
	Logout(ctx context.Context) (Raw, error)
	Renew(ctx context.Context) (tokenResponse, Raw, error)
	Me(ctx context.Context) (account, Raw, error)
	ChangePassword(ctx context.Context, current, next string) (Raw, error)
	EnrollTOTP(ctx context.Context) (totpEnrollment, Raw, error)
	ConfirmTOTP(ctx context.Context, code string) (Raw, error)
	RemoveTOTP(ctx context.Context, id string) (Raw, error)

	ValidateToken(ctx context.Context, req validateRequest) (validation, Raw, error)
	IssueToken(ctx context.Context, req issueRequest) (tokenResponse, Raw, error)
	RevokeToken(ctx context.Context, jti string) (Raw, error)

	ListAccounts(ctx context.Context, q accountQuery) (accountPage, Raw, error)
	CreateAccount(ctx context.Context, req createAccountRequest) (account, Raw, error)
	GetAccount(ctx context.Context, id string) (account, Raw, error)
	UpdateAccount(ctx context.Context, id, status string) (account, Raw, error)
	DeleteAccount(ctx context.Context, id string) (Raw, error)
	SetPassword(ctx context.Context, id, password string) (Raw, error)
	GetRoles(ctx context.Context, id string) (rolesBody, Raw, error)
	SetRoles(ctx context.Context, id string, roles []string) (rolesBody, Raw, error)

	GetPGCreds(ctx context.Context, id string) (pgCreds, Raw, error)
	SetPGCreds(ctx context.Context, id string, pc pgCreds) (Raw, error)

	ListAudit(ctx context.Context, q auditQuery) (auditPage, Raw, error)
	// ReadChain returns up to limit events after afterSeq, oldest first,
	// with their chain hashes.
	ReadChain(ctx context.Context, afterSeq int64, limit int) (chainPage, Raw, error)

	ListKeys(ctx context.Context) (signingKeys, Raw, error)
	RotateKeys(ctx context.Context, emergency bool) (rotateResult, Raw, error)
}

// Raw is a server answer as JSON, for -json.
type Raw []byte

type healthStatus struct {
	Status string `json:"status"`
}

// accountQuery selects accounts; zero fields are left out.
type accountQuery struct {
	Type, Status, Role, Cursor string
	Limit                      int
}

// auditQuery selects audit events; Since is RFC 3339 or empty.
type auditQuery struct {
	Type, AccountID, Since, Cursor string
	Limit                          int
}
