package rest

import (
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
)

// JSON views: the wire shapes of api/openapi.yaml. Nothing secret has a
// field here except where the contract says so (TOTP secret at enroll,
// pgcreds password for the admin).

type accountView struct {
	ID          string   `json:"id"`
	Username    string   `json:"username"`
	AccountType string   `json:"account_type"`
	Status      string   `json:"status"`
	TOTPEnabled bool     `json:"totp_enabled"`
	Roles       []string `json:"roles"`
	CreatedAt   string   `json:"created_at"`
	UpdatedAt   string   `json:"updated_at"`
}

func viewAccount(a core.Account) accountView {
	return accountView{
		ID:          a.ID,
		Username:    a.Username,
		AccountType: string(a.Type),
		Status:      string(a.Status),
		TOTPEnabled: a.TOTPEnabled,
		Roles:       nonNil(a.Roles),
		CreatedAt:   rfc3339(a.CreatedAt),
		UpdatedAt:   rfc3339(a.UpdatedAt),
	}
}

type tokenView struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expires_at"`
}

func viewToken(t core.IssuedToken) tokenView {
	return tokenView{Token: t.Token, ExpiresAt: rfc3339(t.ExpiresAt)}
}

type validationView struct {
	Valid       bool     `json:"valid"`
	Sub         string   `json:"sub,omitempty"`
	Username    string   `json:"username,omitempty"`
	AccountType string   `json:"account_type,omitempty"`
	Roles       []string `json:"roles,omitzero"`
	ExpiresAt   string   `json:"expires_at,omitempty"`
	JTI         string   `json:"jti,omitempty"`
}

type jwkView struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

func viewJWK(k custody.PublicKey) jwkView {
	return jwkView{
		Kty: "OKP", Crv: "Ed25519",
		X:   base64.RawURLEncoding.EncodeToString(k.Key),
		Kid: k.KID, Alg: "EdDSA", Use: "sig",
	}
}

type eventView struct {
	Seq       int64             `json:"seq,omitempty"`
	ID        string            `json:"id"`
	Time      string            `json:"time"`
	Type      string            `json:"type"`
	ActorID   string            `json:"actor_id,omitempty"`
	AccountID string            `json:"account_id,omitempty"`
	IP        string            `json:"ip"`
	RequestID string            `json:"request_id"`
	Outcome   string            `json:"outcome"`
	Details   map[string]string `json:"details"`
	// PrevHash and Hash link the event into the audit chain (hex); empty
	// only from a storage backend that does not chain.
	PrevHash string `json:"prev_hash,omitempty"`
	Hash     string `json:"hash,omitempty"`
}

func viewEvent(e audit.Event) eventView {
	d := e.Details
	if d == nil {
		d = map[string]string{}
	}
	return eventView{
		Seq: e.Seq, ID: e.ID, Time: rfc3339(e.Time), Type: string(e.Type),
		ActorID: e.ActorID, AccountID: e.AccountID, IP: e.IP,
		RequestID: e.RequestID, Outcome: string(e.Outcome), Details: d,
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
	}
}

// viewChainEvent is an event as the chain endpoint returns it: its time
// to the microsecond, which the chain hash covers (audit.ChainHash).
func viewChainEvent(e audit.Event) eventView {
	v := viewEvent(e)
	v.Time = e.Time.UTC().Format(time.RFC3339Nano)
	return v
}

// signingKeyView is a key of GET /v1/keys: its state and its JWK.
type signingKeyView struct {
	Kid        string    `json:"kid"`
	State      string    `json:"state"`
	CreatedAt  time.Time `json:"created_at"`
	StateSince time.Time `json:"state_since"`
	JWK        jwkView   `json:"jwk"`
}

func viewSigningKey(k custody.PublicKey) signingKeyView {
	since := k.StateSince
	if since.IsZero() {
		since = k.CreatedAt
	}
	return signingKeyView{Kid: k.KID, State: string(k.State), CreatedAt: k.CreatedAt.UTC(), StateSince: since.UTC(), JWK: viewJWK(k)}
}

type pgcredsView struct {
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Database string `json:"database"`
	Username string `json:"username"`
	Password string `json:"password"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
