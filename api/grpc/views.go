package grpc

import (
	"encoding/base64"
	"encoding/hex"
	"time"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
)

// Conversions from core values to messages: the same fields, names and
// string forms as the REST views (api/rest/views.go).

func viewAccount(a core.Account) *pb.Account {
	return &pb.Account{
		Id:          a.ID,
		Username:    a.Username,
		AccountType: string(a.Type),
		Status:      string(a.Status),
		TotpEnabled: a.TOTPEnabled,
		Roles:       a.Roles,
		CreatedAt:   rfc3339(a.CreatedAt),
		UpdatedAt:   rfc3339(a.UpdatedAt),
	}
}

func viewJWK(k custody.PublicKey) *pb.JWK {
	return &pb.JWK{
		Kty: "OKP", Crv: "Ed25519",
		X:   base64.RawURLEncoding.EncodeToString(k.Key),
		Kid: k.KID, Alg: "EdDSA", Use: "sig",
	}
}

func viewEvent(e audit.Event) *pb.AuditEvent {
	return &pb.AuditEvent{
		Id: e.ID, Time: rfc3339(e.Time), Type: string(e.Type),
		ActorId: e.ActorID, AccountId: e.AccountID, Ip: e.IP,
		RequestId: e.RequestID, Outcome: string(e.Outcome), Details: e.Details,
		Seq: e.Seq, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
	}
}

// preciseTime is a time as REST's time.Time JSON fields carry it
// (RFC 3339 with the fractional seconds it has).
func preciseTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// keySince is when k entered its state (CreatedAt when the custodian
// does not say), as REST reports it.
func keySince(k custody.PublicKey) time.Time {
	if k.StateSince.IsZero() {
		return k.CreatedAt
	}
	return k.StateSince
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
