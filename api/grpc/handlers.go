package grpc

import (
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/metacircular/mcias/api/frontend"
	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// The handlers check what the REST handlers check before core, with the
// same sentences, then call the same core method. Access rules and the
// password limit were applied by the interceptor (methodRules).

// ---- AdminService ----

type adminServer struct {
	*Server
	pb.UnimplementedAdminServiceServer
}

func (s adminServer) Health(context.Context, *pb.HealthRequest) (*pb.HealthResponse, error) {
	return &pb.HealthResponse{Status: "ok"}, nil
}

func (s adminServer) Ready(ctx context.Context, _ *pb.ReadyRequest) (*pb.ReadyResponse, error) {
	r := s.svc.Ready(ctx)
	out := &pb.ReadyResponse{Status: "ready", Backends: make(map[string]*pb.BackendStatus, len(r.Backends))}
	var down []string
	for role, b := range r.Backends {
		v := &pb.BackendStatus{Name: b.Name, Status: "up"}
		if !b.Up {
			v.Status, v.Error = "down", b.Error
			// A sink that is down holds readiness only when required
			// and beyond its bound.
			if b.Sink == nil || b.Sink.LagExceeded {
				down = append(down, role)
			}
		}
		if sk := b.Sink; sk != nil {
			v.Sink = &pb.SinkStatus{State: sk.State, Required: sk.Required, Cursor: sk.Cursor, LagEvents: sk.LagEvents,
				LagSeconds: sk.LagAge.Seconds(), LagExceeded: sk.LagExceeded, Failures: int64(sk.Failures), LastError: sk.LastError}
		}
		if p := b.Plugin; p != nil {
			v.Plugin = &pb.PluginStatus{Name: p.Name, Status: "up", Pid: int64(p.PID), Restarts: int64(p.Restarts), LastCrash: p.LastError}
			if !p.Up {
				v.Plugin.Status = "down"
			}
		}
		out.Backends[role] = v
	}
	if r.Ready {
		return out, nil
	}
	out.Status = "unavailable"
	slices.Sort(down)
	row, _ := frontend.Classify(sdk.ErrUnavailable)
	return nil, newStatus(row, "not ready: "+strings.Join(down, ", ")+" unavailable", out).Err()
}

func (s adminServer) GetPublicKey(ctx context.Context, _ *pb.GetPublicKeyRequest) (*pb.JWK, error) {
	k, err := s.svc.ActiveKey(ctx)
	if err != nil {
		return nil, err
	}
	return viewJWK(k), nil
}

func (s adminServer) GetJWKS(ctx context.Context, _ *pb.GetJWKSRequest) (*pb.GetJWKSResponse, error) {
	keys, err := s.svc.PublicKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := &pb.GetJWKSResponse{Keys: make([]*pb.JWK, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, viewJWK(k))
	}
	return out, nil
}

func (s adminServer) ListKeys(ctx context.Context, _ *pb.ListKeysRequest) (*pb.ListKeysResponse, error) {
	keys, err := s.svc.ListKeys(ctx, caller(ctx))
	if err != nil {
		return nil, err
	}
	out := &pb.ListKeysResponse{Keys: make([]*pb.SigningKey, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, &pb.SigningKey{
			Kid: k.KID, State: string(k.State), CreatedAt: preciseTime(k.CreatedAt),
			StateSince: preciseTime(keySince(k)), Jwk: viewJWK(k),
		})
	}
	return out, nil
}

func (s adminServer) RotateKeys(ctx context.Context, req *pb.RotateKeysRequest) (*pb.RotateKeysResponse, error) {
	res, err := s.svc.RotateKeys(ctx, caller(ctx), req.Emergency)
	if err != nil {
		return nil, err
	}
	out := &pb.RotateKeysResponse{
		Keys:          make([]*pb.KeyState, 0, len(res.Keys)),
		ActivatesAt:   preciseTime(res.ActivatesAt),
		RevokedTokens: int32(min(res.Revoked, math.MaxInt32)),
	}
	for _, k := range res.Keys {
		out.Keys = append(out.Keys, &pb.KeyState{
			Kid: k.KID, State: string(k.State), CreatedAt: preciseTime(k.CreatedAt), StateSince: preciseTime(keySince(k)),
		})
	}
	return out, nil
}

// ---- AuthService ----

type authServer struct {
	*Server
	pb.UnimplementedAuthServiceServer
}

func (s authServer) Login(ctx context.Context, req *pb.LoginRequest) (*pb.LoginResponse, error) {
	if req.Username == "" || req.Password == "" {
		return nil, invalidArg("username and password are required")
	}
	tok, err := s.svc.Login(ctx, caller(ctx), req.Username, req.Password, req.TotpCode)
	if err != nil {
		return nil, err
	}
	return &pb.LoginResponse{Token: tok.Token, ExpiresAt: rfc3339(tok.ExpiresAt)}, nil
}

func (s authServer) Logout(ctx context.Context, _ *pb.LogoutRequest) (*pb.LogoutResponse, error) {
	if err := s.svc.Logout(ctx, caller(ctx)); err != nil {
		return nil, err
	}
	return &pb.LogoutResponse{}, nil
}

func (s authServer) Renew(ctx context.Context, _ *pb.RenewRequest) (*pb.RenewResponse, error) {
	tok, err := s.svc.Renew(ctx, caller(ctx))
	if err != nil {
		return nil, err
	}
	return &pb.RenewResponse{Token: tok.Token, ExpiresAt: rfc3339(tok.ExpiresAt)}, nil
}

func (s authServer) Me(ctx context.Context, _ *pb.MeRequest) (*pb.Account, error) {
	a, err := s.svc.Me(ctx, caller(ctx))
	if err != nil {
		return nil, err
	}
	return viewAccount(a), nil
}

func (s authServer) ChangePassword(ctx context.Context, req *pb.ChangePasswordRequest) (*pb.ChangePasswordResponse, error) {
	if req.CurrentPassword == "" || req.NewPassword == "" {
		return nil, invalidArg("current_password and new_password are required")
	}
	if err := s.svc.ChangePassword(ctx, caller(ctx), req.CurrentPassword, req.NewPassword); err != nil {
		return nil, err
	}
	return &pb.ChangePasswordResponse{}, nil
}

func (s authServer) EnrollTOTP(ctx context.Context, _ *pb.EnrollTOTPRequest) (*pb.EnrollTOTPResponse, error) {
	e, err := s.svc.EnrollTOTP(ctx, caller(ctx))
	if err != nil {
		return nil, err
	}
	return &pb.EnrollTOTPResponse{Secret: e.Secret, OtpauthUri: e.OTPAuthURI}, nil
}

func (s authServer) ConfirmTOTP(ctx context.Context, req *pb.ConfirmTOTPRequest) (*pb.ConfirmTOTPResponse, error) {
	if req.Code == "" {
		return nil, invalidArg("code is required")
	}
	if err := s.svc.ConfirmTOTP(ctx, caller(ctx), req.Code); err != nil {
		return nil, err
	}
	return &pb.ConfirmTOTPResponse{}, nil
}

func (s authServer) RemoveTOTP(ctx context.Context, req *pb.RemoveTOTPRequest) (*pb.RemoveTOTPResponse, error) {
	if err := s.svc.RemoveTOTP(ctx, caller(ctx), req.AccountId); err != nil {
		return nil, err
	}
	return &pb.RemoveTOTPResponse{}, nil
}

// ---- TokenService ----

type tokenServer struct {
	*Server
	pb.UnimplementedTokenServiceServer
}

func (s tokenServer) ValidateToken(ctx context.Context, req *pb.ValidateTokenRequest) (*pb.ValidateTokenResponse, error) {
	if req.Token == "" {
		return nil, invalidArg("token is required")
	}
	v, err := s.svc.Validate(ctx, req.Token, req.Audience)
	if err != nil {
		return nil, err
	}
	if !v.Valid {
		return &pb.ValidateTokenResponse{}, nil
	}
	return &pb.ValidateTokenResponse{
		Valid: true, Sub: v.Sub, Username: v.Username, AccountType: string(v.AccountType),
		Roles: v.Roles, ExpiresAt: rfc3339(v.ExpiresAt), Jti: v.JTI,
	}, nil
}

func (s tokenServer) IssueServiceToken(ctx context.Context, req *pb.IssueServiceTokenRequest) (*pb.IssueServiceTokenResponse, error) {
	if req.AccountId == "" {
		return nil, invalidArg("account_id is required")
	}
	var ttl time.Duration
	if req.TtlSeconds != nil {
		// As REST: bound before converting so the multiplication cannot
		// overflow; a value past any Duration is clamped, and core then
		// refuses it with the allowed range.
		switch n := *req.TtlSeconds; {
		case n <= 0:
			return nil, invalidArg("ttl_seconds must be a positive number of seconds")
		case n > math.MaxInt64/int64(time.Second):
			ttl = time.Duration(math.MaxInt64)
		default:
			ttl = time.Duration(n) * time.Second
		}
	}
	tok, err := s.svc.IssueServiceToken(ctx, caller(ctx), req.AccountId, ttl, req.Audience)
	if err != nil {
		return nil, err
	}
	return &pb.IssueServiceTokenResponse{Token: tok.Token, ExpiresAt: rfc3339(tok.ExpiresAt)}, nil
}

func (s tokenServer) RevokeToken(ctx context.Context, req *pb.RevokeTokenRequest) (*pb.RevokeTokenResponse, error) {
	if err := s.svc.RevokeToken(ctx, caller(ctx), req.Jti); err != nil {
		return nil, err
	}
	return &pb.RevokeTokenResponse{}, nil
}

// ---- AccountService ----

type accountServer struct {
	*Server
	pb.UnimplementedAccountServiceServer
}

// pageLimit checks a limit as REST checks its query parameter.
func pageLimit(n int32) (int, error) {
	if n < 0 || n > 500 {
		return 0, invalidArg("limit must be an integer from 1 to 500")
	}
	return int(n), nil
}

func (s accountServer) List(ctx context.Context, req *pb.ListAccountsRequest) (*pb.ListAccountsResponse, error) {
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	page, err := s.svc.ListAccounts(ctx, caller(ctx), core.AccountQuery{
		Type:   storage.AccountType(req.Type),
		Status: storage.AccountStatus(req.Status),
		Role:   req.Role,
		Limit:  limit,
		Cursor: req.Cursor,
	})
	if err != nil {
		return nil, err
	}
	out := &pb.ListAccountsResponse{Accounts: make([]*pb.Account, 0, len(page.Accounts)), NextCursor: page.NextCursor}
	for _, a := range page.Accounts {
		out.Accounts = append(out.Accounts, viewAccount(a))
	}
	return out, nil
}

func (s accountServer) Create(ctx context.Context, req *pb.CreateAccountRequest) (*pb.Account, error) {
	a, err := s.svc.CreateAccount(ctx, caller(ctx), core.NewAccount{
		Username: req.Username,
		Type:     storage.AccountType(req.AccountType),
		Password: req.Password,
	})
	if err != nil {
		return nil, err
	}
	return viewAccount(a), nil
}

func (s accountServer) Get(ctx context.Context, req *pb.GetAccountRequest) (*pb.Account, error) {
	a, err := s.svc.GetAccount(ctx, caller(ctx), req.Id)
	if err != nil {
		return nil, err
	}
	return viewAccount(a), nil
}

func (s accountServer) Update(ctx context.Context, req *pb.UpdateAccountRequest) (*pb.Account, error) {
	var u core.AccountUpdate
	if req.Status != nil {
		st := storage.AccountStatus(*req.Status)
		u.Status = &st
	}
	a, err := s.svc.UpdateAccount(ctx, caller(ctx), req.Id, u)
	if err != nil {
		return nil, err
	}
	return viewAccount(a), nil
}

func (s accountServer) Delete(ctx context.Context, req *pb.DeleteAccountRequest) (*pb.DeleteAccountResponse, error) {
	if err := s.svc.DeleteAccount(ctx, caller(ctx), req.Id); err != nil {
		return nil, err
	}
	return &pb.DeleteAccountResponse{}, nil
}

func (s accountServer) SetPassword(ctx context.Context, req *pb.SetPasswordRequest) (*pb.SetPasswordResponse, error) {
	if req.Password == "" {
		return nil, invalidArg("password is required")
	}
	if err := s.svc.SetPassword(ctx, caller(ctx), req.Id, req.Password); err != nil {
		return nil, err
	}
	return &pb.SetPasswordResponse{}, nil
}

func (s accountServer) GetRoles(ctx context.Context, req *pb.GetRolesRequest) (*pb.Roles, error) {
	roles, err := s.svc.GetRoles(ctx, caller(ctx), req.Id)
	if err != nil {
		return nil, err
	}
	return &pb.Roles{Roles: roles}, nil
}

// SetRoles: proto3 cannot tell an absent list from an empty one, so an
// empty list clears (REST needs an explicit [] for that).
func (s accountServer) SetRoles(ctx context.Context, req *pb.SetRolesRequest) (*pb.Roles, error) {
	roles := req.Roles
	if roles == nil {
		roles = []string{}
	}
	out, err := s.svc.SetRoles(ctx, caller(ctx), req.Id, roles)
	if err != nil {
		return nil, err
	}
	return &pb.Roles{Roles: out}, nil
}

// ---- CredentialService ----

type credentialServer struct {
	*Server
	pb.UnimplementedCredentialServiceServer
}

func (s credentialServer) GetPGCreds(ctx context.Context, req *pb.GetPGCredsRequest) (*pb.PGCreds, error) {
	pc, err := s.svc.GetPGCreds(ctx, caller(ctx), req.AccountId)
	if err != nil {
		return nil, err
	}
	return &pb.PGCreds{Host: pc.Host, Port: int32(pc.Port), Database: pc.Database, Username: pc.Username, Password: pc.Password}, nil
}

func (s credentialServer) SetPGCreds(ctx context.Context, req *pb.SetPGCredsRequest) (*pb.SetPGCredsResponse, error) {
	c := req.GetCreds()
	pc := core.PGCreds{Host: c.GetHost(), Port: int(c.GetPort()), Database: c.GetDatabase(), Username: c.GetUsername(), Password: c.GetPassword()}
	if err := s.svc.SetPGCreds(ctx, caller(ctx), req.AccountId, pc); err != nil {
		return nil, err
	}
	return &pb.SetPGCredsResponse{}, nil
}

// ---- AuditService ----

type auditServer struct {
	*Server
	pb.UnimplementedAuditServiceServer
}

func (s auditServer) ListEvents(ctx context.Context, req *pb.ListEventsRequest) (*pb.ListEventsResponse, error) {
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	q := core.AuditQuery{Type: audit.Type(req.Type), AccountID: req.AccountId, Limit: limit, Cursor: req.Cursor}
	if req.Since != "" {
		t, err := time.Parse(time.RFC3339, req.Since)
		if err != nil {
			return nil, invalidArg("since must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
		}
		q.Since = t
	}
	page, err := s.svc.ListAudit(ctx, caller(ctx), q)
	if err != nil {
		return nil, err
	}
	out := &pb.ListEventsResponse{Events: make([]*pb.AuditEvent, 0, len(page.Events)), NextCursor: page.NextCursor}
	for _, e := range page.Events {
		out.Events = append(out.Events, viewEvent(e))
	}
	return out, nil
}

func (s auditServer) ReadChain(ctx context.Context, req *pb.ReadChainRequest) (*pb.ReadChainResponse, error) {
	limit, err := pageLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	if req.AfterSeq < 0 {
		return nil, invalidArg("after_seq must be a non-negative integer")
	}
	evs, err := s.svc.ReadChain(ctx, caller(ctx), req.AfterSeq, limit)
	if err != nil {
		return nil, err
	}
	out := &pb.ReadChainResponse{Events: make([]*pb.AuditEvent, 0, len(evs))}
	for _, e := range evs {
		v := viewEvent(e)
		v.Time = e.Time.UTC().Format(time.RFC3339Nano)
		out.Events = append(out.Events, v)
	}
	return out, nil
}
