package plugin

import (
	"crypto/ed25519"
	"time"

	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/auditv1"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/custodyv1"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// Every conversion between sdk values and wire messages lives in this
// file, both directions side by side, so a field added to an sdk type has
// one place to be carried. Conversions are total: any message, however
// odd, yields a value (proto getters are nil-safe and time.Unix normalises
// out-of-range nanoseconds), and the backend judges the value.

// Times cross as seconds and nanoseconds; the zero time as an absent
// message. Times come back in UTC, which is what the contract stores.

func timeToPB(t time.Time) *auditv1.Timestamp {
	if t.IsZero() {
		return nil
	}
	return &auditv1.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
}

func timeFromPB(ts *auditv1.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return time.Unix(ts.GetSeconds(), int64(ts.GetNanos())).UTC()
}

func custodyTimeToPB(t time.Time) *custodyv1.Timestamp {
	if t.IsZero() {
		return nil
	}
	return &custodyv1.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
}

func custodyTimeFromPB(ts *custodyv1.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return time.Unix(ts.GetSeconds(), int64(ts.GetNanos())).UTC()
}

// --- audit ---

func eventToPB(e audit.Event) *auditv1.Event {
	return &auditv1.Event{
		Id:        e.ID,
		Seq:       e.Seq,
		Time:      timeToPB(e.Time),
		Type:      string(e.Type),
		ActorId:   e.ActorID,
		AccountId: e.AccountID,
		Ip:        e.IP,
		RequestId: e.RequestID,
		Outcome:   string(e.Outcome),
		Details:   e.Details,
		PrevHash:  e.PrevHash,
		Hash:      e.Hash,
	}
}

func eventFromPB(m *auditv1.Event) audit.Event {
	return audit.Event{
		ID:        m.GetId(),
		Seq:       m.GetSeq(),
		Time:      timeFromPB(m.GetTime()),
		Type:      audit.Type(m.GetType()),
		ActorID:   m.GetActorId(),
		AccountID: m.GetAccountId(),
		IP:        m.GetIp(),
		RequestID: m.GetRequestId(),
		Outcome:   audit.Outcome(m.GetOutcome()),
		Details:   m.GetDetails(),
		PrevHash:  m.GetPrevHash(),
		Hash:      m.GetHash(),
	}
}

func eventsToPB(evs []audit.Event) []*auditv1.Event {
	out := make([]*auditv1.Event, len(evs))
	for i, e := range evs {
		out[i] = eventToPB(e)
	}
	return out
}

func eventsFromPB(ms []*auditv1.Event) []audit.Event {
	if len(ms) == 0 {
		return nil
	}
	out := make([]audit.Event, len(ms))
	for i, m := range ms {
		out[i] = eventFromPB(m)
	}
	return out
}

// --- storage ---

func accountToPB(a storage.Account) *storagev1.Account {
	return &storagev1.Account{
		Id:           a.ID,
		Username:     a.Username,
		Skeleton:     a.Skeleton,
		Type:         string(a.Type),
		Status:       string(a.Status),
		PasswordHash: a.PasswordHash,
		Roles:        a.Roles,
		TotpSecret:   a.TOTPSecret,
		TotpEnabled:  a.TOTPEnabled,
		TotpLastStep: a.TOTPLastStep,
		CreatedAt:    timeToPB(a.CreatedAt),
		UpdatedAt:    timeToPB(a.UpdatedAt),
		Version:      a.Version,
	}
}

func accountFromPB(m *storagev1.Account) storage.Account {
	return storage.Account{
		ID:           m.GetId(),
		Username:     m.GetUsername(),
		Skeleton:     m.GetSkeleton(),
		Type:         storage.AccountType(m.GetType()),
		Status:       storage.AccountStatus(m.GetStatus()),
		PasswordHash: m.GetPasswordHash(),
		Roles:        m.GetRoles(),
		TOTPSecret:   m.GetTotpSecret(),
		TOTPEnabled:  m.GetTotpEnabled(),
		TOTPLastStep: m.GetTotpLastStep(),
		CreatedAt:    timeFromPB(m.GetCreatedAt()),
		UpdatedAt:    timeFromPB(m.GetUpdatedAt()),
		Version:      m.GetVersion(),
	}
}

func accountsToPB(as []storage.Account) []*storagev1.Account {
	out := make([]*storagev1.Account, len(as))
	for i, a := range as {
		out[i] = accountToPB(a)
	}
	return out
}

func accountsFromPB(ms []*storagev1.Account) []storage.Account {
	if len(ms) == 0 {
		return nil
	}
	out := make([]storage.Account, len(ms))
	for i, m := range ms {
		out[i] = accountFromPB(m)
	}
	return out
}

func accountFilterToPB(f storage.AccountFilter) *storagev1.ListAccountsRequest {
	return &storagev1.ListAccountsRequest{
		Type:           string(f.Type),
		Status:         string(f.Status),
		Role:           f.Role,
		IncludeDeleted: f.IncludeDeleted,
		Limit:          int64(f.Limit),
		Cursor:         f.Cursor,
	}
}

func accountFilterFromPB(m *storagev1.ListAccountsRequest) storage.AccountFilter {
	return storage.AccountFilter{
		Type:           storage.AccountType(m.GetType()),
		Status:         storage.AccountStatus(m.GetStatus()),
		Role:           m.GetRole(),
		IncludeDeleted: m.GetIncludeDeleted(),
		Limit:          int(m.GetLimit()),
		Cursor:         m.GetCursor(),
	}
}

func updateOptionsToPB(o storage.UpdateOptions) *storagev1.UpdateOptions {
	return &storagev1.UpdateOptions{
		KeepActiveAdmin: o.KeepActiveAdmin,
		RevokeTokens:    o.RevokeTokens,
		KeepJti:         o.KeepJTI,
		RevokeReason:    o.RevokeReason,
	}
}

func updateOptionsFromPB(m *storagev1.UpdateOptions) storage.UpdateOptions {
	return storage.UpdateOptions{
		KeepActiveAdmin: m.GetKeepActiveAdmin(),
		RevokeTokens:    m.GetRevokeTokens(),
		KeepJTI:         m.GetKeepJti(),
		RevokeReason:    m.GetRevokeReason(),
	}
}

func tokenToPB(t storage.Token) *storagev1.Token {
	return &storagev1.Token{
		Jti:          t.JTI,
		AccountId:    t.AccountID,
		Kind:         string(t.Kind),
		Audience:     t.Audience,
		Kid:          t.KID,
		IssuedAt:     timeToPB(t.IssuedAt),
		ExpiresAt:    timeToPB(t.ExpiresAt),
		RevokedAt:    timeToPB(t.RevokedAt),
		RevokeReason: t.RevokeReason,
	}
}

func tokenFromPB(m *storagev1.Token) storage.Token {
	return storage.Token{
		JTI:          m.GetJti(),
		AccountID:    m.GetAccountId(),
		Kind:         storage.TokenKind(m.GetKind()),
		Audience:     m.GetAudience(),
		KID:          m.GetKid(),
		IssuedAt:     timeFromPB(m.GetIssuedAt()),
		ExpiresAt:    timeFromPB(m.GetExpiresAt()),
		RevokedAt:    timeFromPB(m.GetRevokedAt()),
		RevokeReason: m.GetRevokeReason(),
	}
}

func tokensToPB(ts []storage.Token) []*storagev1.Token {
	out := make([]*storagev1.Token, len(ts))
	for i, t := range ts {
		out[i] = tokenToPB(t)
	}
	return out
}

func tokensFromPB(ms []*storagev1.Token) []storage.Token {
	if len(ms) == 0 {
		return nil
	}
	out := make([]storage.Token, len(ms))
	for i, m := range ms {
		out[i] = tokenFromPB(m)
	}
	return out
}

func tokenFilterToPB(f storage.TokenFilter) *storagev1.ListTokensRequest {
	return &storagev1.ListTokensRequest{
		AccountId:    f.AccountID,
		RevokedOnly:  f.RevokedOnly,
		ExpiresAfter: timeToPB(f.ExpiresAfter),
		RevokedAfter: timeToPB(f.RevokedAfter),
		Kid:          f.KID,
		Limit:        int64(f.Limit),
	}
}

func tokenFilterFromPB(m *storagev1.ListTokensRequest) storage.TokenFilter {
	return storage.TokenFilter{
		AccountID:    m.GetAccountId(),
		RevokedOnly:  m.GetRevokedOnly(),
		ExpiresAfter: timeFromPB(m.GetExpiresAfter()),
		RevokedAfter: timeFromPB(m.GetRevokedAfter()),
		KID:          m.GetKid(),
		Limit:        int(m.GetLimit()),
	}
}

func pgCredsToPB(c storage.PGCreds) *storagev1.PGCreds {
	return &storagev1.PGCreds{
		AccountId: c.AccountID,
		Host:      c.Host,
		Port:      int64(c.Port),
		Database:  c.Database,
		Username:  c.Username,
		Password:  c.Password,
		UpdatedAt: timeToPB(c.UpdatedAt),
		Version:   c.Version,
	}
}

func pgCredsFromPB(m *storagev1.PGCreds) storage.PGCreds {
	return storage.PGCreds{
		AccountID: m.GetAccountId(),
		Host:      m.GetHost(),
		Port:      int(m.GetPort()),
		Database:  m.GetDatabase(),
		Username:  m.GetUsername(),
		Password:  m.GetPassword(),
		UpdatedAt: timeFromPB(m.GetUpdatedAt()),
		Version:   m.GetVersion(),
	}
}

func eventFilterToPB(f storage.EventFilter) *storagev1.ListEventsRequest {
	return &storagev1.ListEventsRequest{
		Type:      string(f.Type),
		AccountId: f.AccountID,
		Since:     timeToPB(f.Since),
		BeforeSeq: f.BeforeSeq,
		Limit:     int64(f.Limit),
	}
}

func eventFilterFromPB(m *storagev1.ListEventsRequest) storage.EventFilter {
	return storage.EventFilter{
		Type:      audit.Type(m.GetType()),
		AccountID: m.GetAccountId(),
		Since:     timeFromPB(m.GetSince()),
		BeforeSeq: m.GetBeforeSeq(),
		Limit:     int(m.GetLimit()),
	}
}

// --- custody ---

func publicKeyToPB(k custody.PublicKey) *custodyv1.PublicKey {
	return &custodyv1.PublicKey{
		Kid:        k.KID,
		Alg:        k.Alg,
		Key:        k.Key,
		State:      string(k.State),
		CreatedAt:  custodyTimeToPB(k.CreatedAt),
		StateSince: custodyTimeToPB(k.StateSince),
	}
}

func publicKeyFromPB(m *custodyv1.PublicKey) custody.PublicKey {
	return custody.PublicKey{
		KID:        m.GetKid(),
		Alg:        m.GetAlg(),
		Key:        ed25519.PublicKey(m.GetKey()),
		State:      custody.KeyState(m.GetState()),
		CreatedAt:  custodyTimeFromPB(m.GetCreatedAt()),
		StateSince: custodyTimeFromPB(m.GetStateSince()),
	}
}

func publicKeysToPB(ks []custody.PublicKey) []*custodyv1.PublicKey {
	out := make([]*custodyv1.PublicKey, len(ks))
	for i, k := range ks {
		out[i] = publicKeyToPB(k)
	}
	return out
}

func publicKeysFromPB(ms []*custodyv1.PublicKey) []custody.PublicKey {
	if len(ms) == 0 {
		return nil
	}
	out := make([]custody.PublicKey, len(ms))
	for i, m := range ms {
		out[i] = publicKeyFromPB(m)
	}
	return out
}
