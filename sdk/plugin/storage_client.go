package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// storageClient is the host-side shim: a storage.Store whose every method
// is one RPC to the plugin. One value serves all four per-aggregate
// stores; their method sets do not overlap. Every error comes back through
// fromStatus, so errors.Is works against the sdk kinds.
type storageClient struct {
	c storagev1.StorageClient
	// leases is what the plugin's Open answered: its store is a
	// storage.Leaser.
	leases bool
}

var _ interface {
	storage.Store
	storage.AccountStore
	storage.TokenStore
	storage.CredentialStore
	storage.AuditStore
} = (*storageClient)(nil)

// malformed is the error for an answer that cannot be the one asked for
// (a record missing, or another record than the one named). A plugin bug
// must never read as an answer: an empty token record would look like a
// token that is not revoked.
func malformed(op string) error {
	return fmt.Errorf("storage plugin: %s: %w: the plugin's answer does not match the request", op, sdk.ErrInternal)
}

func (s *storageClient) Accounts() storage.AccountStore       { return s }
func (s *storageClient) Tokens() storage.TokenStore           { return s }
func (s *storageClient) Credentials() storage.CredentialStore { return s }
func (s *storageClient) Audit() storage.AuditStore            { return s }

func (s *storageClient) open(ctx context.Context, uri string) error {
	resp, err := s.c.Open(ctx, &storagev1.OpenRequest{Uri: uri})
	if err != nil {
		return fromStatus("storage plugin: open", err)
	}
	s.leases = resp.GetLeases()
	return nil
}

// store is the opened client as the host sees it: with the optional
// capabilities the plugin's store has, and only those.
func (s *storageClient) store() storage.Store {
	if s.leases {
		return &leasingClient{s}
	}
	return s
}

func (s *storageClient) Info(ctx context.Context) (storage.Info, error) {
	resp, err := s.c.Info(ctx, &storagev1.InfoRequest{})
	if err != nil {
		return storage.Info{}, fromStatus("storage plugin: info", err)
	}
	return storage.Info{Name: resp.GetName(), SchemaVersion: int(resp.GetSchemaVersion())}, nil
}

func (s *storageClient) Ping(ctx context.Context) error {
	_, err := s.c.Ping(ctx, &storagev1.PingRequest{})
	return fromStatus("storage plugin: ping", err)
}

func (s *storageClient) Close(ctx context.Context) error {
	_, err := s.c.Close(ctx, &storagev1.CloseRequest{})
	return fromStatus("storage plugin: close", err)
}

func (s *storageClient) CreateAccount(ctx context.Context, a storage.Account, ev audit.Event) error {
	_, err := s.c.CreateAccount(ctx, &storagev1.CreateAccountRequest{Account: accountToPB(a), Event: eventToPB(ev)})
	return fromStatus("storage plugin: create account", err)
}

func (s *storageClient) GetAccount(ctx context.Context, id string) (storage.Account, error) {
	resp, err := s.c.GetAccount(ctx, &storagev1.GetAccountRequest{Id: id})
	if err != nil {
		return storage.Account{}, fromStatus("storage plugin: get account", err)
	}
	if resp.GetAccount().GetId() != id {
		return storage.Account{}, malformed("get account")
	}
	return accountFromPB(resp.GetAccount()), nil
}

func (s *storageClient) GetAccountByUsername(ctx context.Context, username string) (storage.Account, error) {
	resp, err := s.c.GetAccountByUsername(ctx, &storagev1.GetAccountByUsernameRequest{Username: username})
	if err != nil {
		return storage.Account{}, fromStatus("storage plugin: get account by username", err)
	}
	if resp.GetAccount().GetUsername() != username || resp.GetAccount().GetId() == "" {
		return storage.Account{}, malformed("get account by username")
	}
	return accountFromPB(resp.GetAccount()), nil
}

func (s *storageClient) ListAccounts(ctx context.Context, f storage.AccountFilter) ([]storage.Account, string, error) {
	resp, err := s.c.ListAccounts(ctx, accountFilterToPB(f))
	if err != nil {
		return nil, "", fromStatus("storage plugin: list accounts", err)
	}
	return accountsFromPB(resp.GetAccounts()), resp.GetNext(), nil
}

func (s *storageClient) UpdateAccount(ctx context.Context, a storage.Account, opts storage.UpdateOptions, ev audit.Event) (storage.Account, error) {
	resp, err := s.c.UpdateAccount(ctx, &storagev1.UpdateAccountRequest{
		Account: accountToPB(a), Options: updateOptionsToPB(opts), Event: eventToPB(ev),
	})
	if err != nil {
		return storage.Account{}, fromStatus("storage plugin: update account", err)
	}
	if resp.GetAccount().GetId() != a.ID {
		return storage.Account{}, malformed("update account")
	}
	return accountFromPB(resp.GetAccount()), nil
}

func (s *storageClient) CountAccounts(ctx context.Context) (int, error) {
	resp, err := s.c.CountAccounts(ctx, &storagev1.CountAccountsRequest{})
	if err != nil {
		return 0, fromStatus("storage plugin: count accounts", err)
	}
	return int(resp.GetCount()), nil
}

func (s *storageClient) CreateToken(ctx context.Context, t storage.Token, replaces string, ev audit.Event) error {
	_, err := s.c.CreateToken(ctx, &storagev1.CreateTokenRequest{Token: tokenToPB(t), Replaces: replaces, Event: eventToPB(ev)})
	return fromStatus("storage plugin: create token", err)
}

func (s *storageClient) GetToken(ctx context.Context, jti string) (storage.Token, error) {
	resp, err := s.c.GetToken(ctx, &storagev1.GetTokenRequest{Jti: jti})
	if err != nil {
		return storage.Token{}, fromStatus("storage plugin: get token", err)
	}
	if resp.GetToken().GetJti() != jti {
		return storage.Token{}, malformed("get token")
	}
	return tokenFromPB(resp.GetToken()), nil
}

func (s *storageClient) RevokeToken(ctx context.Context, jti string, at time.Time, reason string, ev audit.Event) error {
	_, err := s.c.RevokeToken(ctx, &storagev1.RevokeTokenRequest{Jti: jti, At: timeToPB(at), Reason: reason, Event: eventToPB(ev)})
	return fromStatus("storage plugin: revoke token", err)
}

func (s *storageClient) ListTokens(ctx context.Context, f storage.TokenFilter) ([]storage.Token, error) {
	resp, err := s.c.ListTokens(ctx, tokenFilterToPB(f))
	if err != nil {
		return nil, fromStatus("storage plugin: list tokens", err)
	}
	return tokensFromPB(resp.GetTokens()), nil
}

func (s *storageClient) PruneTokens(ctx context.Context, before time.Time) (int, error) {
	resp, err := s.c.PruneTokens(ctx, &storagev1.PruneTokensRequest{Before: timeToPB(before)})
	if err != nil {
		return 0, fromStatus("storage plugin: prune tokens", err)
	}
	return int(resp.GetCount()), nil
}

func (s *storageClient) GetPGCreds(ctx context.Context, accountID string) (storage.PGCreds, error) {
	resp, err := s.c.GetPGCreds(ctx, &storagev1.GetPGCredsRequest{AccountId: accountID})
	if err != nil {
		return storage.PGCreds{}, fromStatus("storage plugin: get pgcreds", err)
	}
	if resp.GetCreds().GetAccountId() != accountID {
		return storage.PGCreds{}, malformed("get pgcreds")
	}
	return pgCredsFromPB(resp.GetCreds()), nil
}

func (s *storageClient) PutPGCreds(ctx context.Context, c storage.PGCreds, ev audit.Event) (storage.PGCreds, error) {
	resp, err := s.c.PutPGCreds(ctx, &storagev1.PutPGCredsRequest{Creds: pgCredsToPB(c), Event: eventToPB(ev)})
	if err != nil {
		return storage.PGCreds{}, fromStatus("storage plugin: put pgcreds", err)
	}
	if resp.GetCreds().GetAccountId() != c.AccountID {
		return storage.PGCreds{}, malformed("put pgcreds")
	}
	return pgCredsFromPB(resp.GetCreds()), nil
}

func (s *storageClient) AppendEvent(ctx context.Context, ev audit.Event) error {
	_, err := s.c.AppendEvent(ctx, &storagev1.AppendEventRequest{Event: eventToPB(ev)})
	return fromStatus("storage plugin: append event", err)
}

func (s *storageClient) ListEvents(ctx context.Context, f storage.EventFilter) ([]audit.Event, error) {
	resp, err := s.c.ListEvents(ctx, eventFilterToPB(f))
	if err != nil {
		return nil, fromStatus("storage plugin: list events", err)
	}
	return eventsFromPB(resp.GetEvents()), nil
}

func (s *storageClient) ReadEvents(ctx context.Context, afterSeq int64, limit int) ([]audit.Event, error) {
	resp, err := s.c.ReadEvents(ctx, &storagev1.ReadEventsRequest{AfterSeq: afterSeq, Limit: int64(limit)})
	if err != nil {
		return nil, fromStatus("storage plugin: read events", err)
	}
	return eventsFromPB(resp.GetEvents()), nil
}

func (s *storageClient) SinkCursor(ctx context.Context, sink string) (int64, error) {
	resp, err := s.c.SinkCursor(ctx, &storagev1.SinkCursorRequest{Sink: sink})
	if err != nil {
		return 0, fromStatus("storage plugin: sink cursor", err)
	}
	return resp.GetSeq(), nil
}

func (s *storageClient) SetSinkCursor(ctx context.Context, sink string, seq int64) error {
	_, err := s.c.SetSinkCursor(ctx, &storagev1.SetSinkCursorRequest{Sink: sink, Seq: seq})
	return fromStatus("storage plugin: set sink cursor", err)
}
