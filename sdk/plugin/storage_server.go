package plugin

import (
	"context"
	"log/slog"

	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// storageServer is the plugin-side shim: it answers the Storage service by
// calling the storage.Store its factory opened. Every error leaves through
// toStatus.
type storageServer struct {
	storagev1.UnimplementedStorageServer
	factory storage.Factory
	logger  *slog.Logger
	store   opened[storage.Store]
}

func newStorageServer(f storage.Factory, logger *slog.Logger) *storageServer {
	return &storageServer{factory: f, logger: logger, store: opened[storage.Store]{kind: KindStorage}}
}

func (s *storageServer) Open(ctx context.Context, req *storagev1.OpenRequest) (*storagev1.OpenResponse, error) {
	if err := s.store.open(ctx, req.GetUri(), s.logger, s.factory); err != nil {
		return nil, toStatus(err)
	}
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	_, leases := st.(storage.Leaser)
	return &storagev1.OpenResponse{Leases: leases}, nil
}

func (s *storageServer) Close(ctx context.Context, _ *storagev1.CloseRequest) (*storagev1.CloseResponse, error) {
	if err := s.store.close(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.CloseResponse{}, nil
}

func (s *storageServer) Info(ctx context.Context, _ *storagev1.InfoRequest) (*storagev1.InfoResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.InfoResponse{Name: info.Name, SchemaVersion: int64(info.SchemaVersion)}, nil
}

func (s *storageServer) Ping(ctx context.Context, _ *storagev1.PingRequest) (*storagev1.PingResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := st.Ping(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.PingResponse{}, nil
}

func (s *storageServer) CreateAccount(ctx context.Context, req *storagev1.CreateAccountRequest) (*storagev1.CreateAccountResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := st.Accounts().CreateAccount(ctx, accountFromPB(req.GetAccount()), eventFromPB(req.GetEvent())); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.CreateAccountResponse{}, nil
}

func (s *storageServer) GetAccount(ctx context.Context, req *storagev1.GetAccountRequest) (*storagev1.GetAccountResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	a, err := st.Accounts().GetAccount(ctx, req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.GetAccountResponse{Account: accountToPB(a)}, nil
}

func (s *storageServer) GetAccountByUsername(ctx context.Context, req *storagev1.GetAccountByUsernameRequest) (*storagev1.GetAccountByUsernameResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	a, err := st.Accounts().GetAccountByUsername(ctx, req.GetUsername())
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.GetAccountByUsernameResponse{Account: accountToPB(a)}, nil
}

func (s *storageServer) ListAccounts(ctx context.Context, req *storagev1.ListAccountsRequest) (*storagev1.ListAccountsResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	as, next, err := st.Accounts().ListAccounts(ctx, accountFilterFromPB(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.ListAccountsResponse{Accounts: accountsToPB(as), Next: next}, nil
}

func (s *storageServer) UpdateAccount(ctx context.Context, req *storagev1.UpdateAccountRequest) (*storagev1.UpdateAccountResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	a, err := st.Accounts().UpdateAccount(ctx, accountFromPB(req.GetAccount()), updateOptionsFromPB(req.GetOptions()), eventFromPB(req.GetEvent()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.UpdateAccountResponse{Account: accountToPB(a)}, nil
}

func (s *storageServer) CountAccounts(ctx context.Context, _ *storagev1.CountAccountsRequest) (*storagev1.CountAccountsResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	n, err := st.Accounts().CountAccounts(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.CountAccountsResponse{Count: int64(n)}, nil
}

func (s *storageServer) CreateToken(ctx context.Context, req *storagev1.CreateTokenRequest) (*storagev1.CreateTokenResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := st.Tokens().CreateToken(ctx, tokenFromPB(req.GetToken()), req.GetReplaces(), eventFromPB(req.GetEvent())); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.CreateTokenResponse{}, nil
}

func (s *storageServer) GetToken(ctx context.Context, req *storagev1.GetTokenRequest) (*storagev1.GetTokenResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	t, err := st.Tokens().GetToken(ctx, req.GetJti())
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.GetTokenResponse{Token: tokenToPB(t)}, nil
}

func (s *storageServer) RevokeToken(ctx context.Context, req *storagev1.RevokeTokenRequest) (*storagev1.RevokeTokenResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := st.Tokens().RevokeToken(ctx, req.GetJti(), timeFromPB(req.GetAt()), req.GetReason(), eventFromPB(req.GetEvent())); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.RevokeTokenResponse{}, nil
}

func (s *storageServer) ListTokens(ctx context.Context, req *storagev1.ListTokensRequest) (*storagev1.ListTokensResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	ts, err := st.Tokens().ListTokens(ctx, tokenFilterFromPB(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.ListTokensResponse{Tokens: tokensToPB(ts)}, nil
}

func (s *storageServer) PruneTokens(ctx context.Context, req *storagev1.PruneTokensRequest) (*storagev1.PruneTokensResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	n, err := st.Tokens().PruneTokens(ctx, timeFromPB(req.GetBefore()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.PruneTokensResponse{Count: int64(n)}, nil
}

func (s *storageServer) GetPGCreds(ctx context.Context, req *storagev1.GetPGCredsRequest) (*storagev1.GetPGCredsResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	c, err := st.Credentials().GetPGCreds(ctx, req.GetAccountId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.GetPGCredsResponse{Creds: pgCredsToPB(c)}, nil
}

func (s *storageServer) PutPGCreds(ctx context.Context, req *storagev1.PutPGCredsRequest) (*storagev1.PutPGCredsResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	c, err := st.Credentials().PutPGCreds(ctx, pgCredsFromPB(req.GetCreds()), eventFromPB(req.GetEvent()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.PutPGCredsResponse{Creds: pgCredsToPB(c)}, nil
}

func (s *storageServer) AppendEvent(ctx context.Context, req *storagev1.AppendEventRequest) (*storagev1.AppendEventResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := st.Audit().AppendEvent(ctx, eventFromPB(req.GetEvent())); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.AppendEventResponse{}, nil
}

func (s *storageServer) ListEvents(ctx context.Context, req *storagev1.ListEventsRequest) (*storagev1.ListEventsResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	evs, err := st.Audit().ListEvents(ctx, eventFilterFromPB(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.ListEventsResponse{Events: eventsToPB(evs)}, nil
}

func (s *storageServer) ReadEvents(ctx context.Context, req *storagev1.ReadEventsRequest) (*storagev1.ReadEventsResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	evs, err := st.Audit().ReadEvents(ctx, req.GetAfterSeq(), int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.ReadEventsResponse{Events: eventsToPB(evs)}, nil
}

func (s *storageServer) SinkCursor(ctx context.Context, req *storagev1.SinkCursorRequest) (*storagev1.SinkCursorResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	seq, err := st.Audit().SinkCursor(ctx, req.GetSink())
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.SinkCursorResponse{Seq: seq}, nil
}

func (s *storageServer) SetSinkCursor(ctx context.Context, req *storagev1.SetSinkCursorRequest) (*storagev1.SetSinkCursorResponse, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := st.Audit().SetSinkCursor(ctx, req.GetSink(), req.GetSeq()); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.SetSinkCursorResponse{}, nil
}
