package ctl

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
)

// GRPCClient talks to the MCIAS gRPC API (proto/mcias/v1) over TLS; it
// implements API with the same shapes as the REST client.
type GRPCClient struct {
	conn    *grpc.ClientConn
	token   string
	timeout time.Duration

	admin   pb.AdminServiceClient
	auth    pb.AuthServiceClient
	tokens  pb.TokenServiceClient
	account pb.AccountServiceClient
	creds   pb.CredentialServiceClient
	audit   pb.AuditServiceClient
}

// NewGRPCClient checks the address (host:port) and builds a TLS client
// that trusts the system roots plus the PEM bundle in caFile (if any).
// There is no plaintext mode: passwords and tokens cross this wire.
func NewGRPCClient(server, token, caFile string, timeout time.Duration) (*GRPCClient, error) {
	if strings.Contains(server, "://") {
		return nil, usagef("bad -server %q: want host:port (the gRPC API is always TLS)", server)
	}
	if _, port, err := net.SplitHostPort(server); err != nil || port == "" {
		return nil, usagef("bad -server %q: want host:port", server)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA bundle %s: no PEM certificate found", caFile)
		}
		tlsConf.RootCAs = pool
	}
	conn, err := grpc.NewClient(server,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		grpc.WithUserAgent("mciasgrpcctl/1"),
		// Answers are capped like the REST client's.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponse)))
	if err != nil {
		return nil, usagef("bad -server %q: %v", server, err)
	}
	return &GRPCClient{
		conn: conn, token: strings.TrimSpace(token), timeout: timeout,
		admin: pb.NewAdminServiceClient(conn), auth: pb.NewAuthServiceClient(conn),
		tokens: pb.NewTokenServiceClient(conn), account: pb.NewAccountServiceClient(conn),
		creds: pb.NewCredentialServiceClient(conn), audit: pb.NewAuditServiceClient(conn),
	}, nil
}

// Close closes the connection.
func (c *GRPCClient) Close() error { return c.conn.Close() }

// unary runs one call with the timeout and, when auth, the bearer token,
// and returns the answer with its JSON form.
func unary[Req, Resp proto.Message](ctx context.Context, c *GRPCClient, auth bool,
	call func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, Raw, error) {
	var zero Resp
	if auth {
		if c.token == "" {
			return zero, nil, errNoToken
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := call(ctx, req)
	if err != nil {
		return zero, nil, grpcError(err)
	}
	return resp, rawJSON(resp), nil
}

// rawJSON renders a response as -json prints it: protojson with the proto
// field names, which are the REST names, compacted (protojson varies its
// whitespace on purpose; scripts should see one form). An empty message
// is no JSON at all, as REST's 204 is.
func rawJSON(m proto.Message) Raw {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil
	}
	var out bytes.Buffer
	if json.Compact(&out, b) != nil || out.String() == "{}" {
		return nil
	}
	return out.Bytes()
}

// grpcError turns a failed call into an *APIError when the server
// answered with a contract error, else into a *TransportError.
func grpcError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return &TransportError{Err: err}
	}
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	if info == nil || info.Domain != "mcias" {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
			// No answer from an MCIAS server: connection, TLS, timeout.
			return &TransportError{Err: errors.New(st.Message())}
		}
		return &APIError{GRPCCode: st.Code().String(), Message: "server answered: " + st.Message()}
	}
	ae := &APIError{GRPCCode: st.Code().String(), Code: info.Reason, Message: st.Message()}
	if retry != nil {
		ae.RetryAfter = strconv.Itoa(int(math.Ceil(retry.GetRetryDelay().AsDuration().Seconds())))
	}
	return ae
}

// ---- conversions to the CLI's shapes ----

func fromAccount(a *pb.Account) account {
	return account{
		ID: a.GetId(), Username: a.GetUsername(), AccountType: a.GetAccountType(), Status: a.GetStatus(),
		TOTPEnabled: a.GetTotpEnabled(), Roles: a.GetRoles(), CreatedAt: a.GetCreatedAt(), UpdatedAt: a.GetUpdatedAt(),
	}
}

func fromJWK(k *pb.JWK) jwk {
	return jwk{Kty: k.GetKty(), Crv: k.GetCrv(), X: k.GetX(), Kid: k.GetKid(), Alg: k.GetAlg(), Use: k.GetUse()}
}

func fromReady(r *pb.ReadyResponse) readiness {
	out := readiness{Status: r.GetStatus(), Backends: map[string]backendState{}}
	for role, b := range r.GetBackends() {
		st := backendState{Name: b.GetName(), Status: b.GetStatus(), Error: b.GetError()}
		if sk := b.GetSink(); sk != nil {
			st.Sink = &sinkState{State: sk.GetState(), Required: sk.GetRequired(), LagEvents: sk.GetLagEvents(),
				LagSeconds: sk.GetLagSeconds(), LagExceeded: sk.GetLagExceeded()}
		}
		out.Backends[role] = st
	}
	return out
}

// ---- API ----

func (c *GRPCClient) Health(ctx context.Context) (healthStatus, Raw, error) {
	r, raw, err := unary(ctx, c, false, c.admin.Health, &pb.HealthRequest{})
	return healthStatus{Status: r.GetStatus()}, raw, err
}

// Ready: a server that is not ready fails with UNAVAILABLE and the report
// as a detail; that is an answer, not an error.
func (c *GRPCClient) Ready(ctx context.Context) (readiness, Raw, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.admin.Ready(ctx, &pb.ReadyRequest{})
	if err != nil {
		for _, d := range status.Convert(err).Details() {
			if rep, ok := d.(*pb.ReadyResponse); ok {
				return fromReady(rep), rawJSON(rep), nil
			}
		}
		return readiness{}, nil, grpcError(err)
	}
	return fromReady(r), rawJSON(r), nil
}

func (c *GRPCClient) PublicKey(ctx context.Context) (jwk, Raw, error) {
	r, raw, err := unary(ctx, c, false, c.admin.GetPublicKey, &pb.GetPublicKeyRequest{})
	return fromJWK(r), raw, err
}

func (c *GRPCClient) JWKS(ctx context.Context) (jwks, Raw, error) {
	r, raw, err := unary(ctx, c, false, c.admin.GetJWKS, &pb.GetJWKSRequest{})
	out := jwks{Keys: []jwk{}}
	for _, k := range r.GetKeys() {
		out.Keys = append(out.Keys, fromJWK(k))
	}
	return out, raw, err
}

func (c *GRPCClient) Login(ctx context.Context, req loginRequest) (tokenResponse, Raw, error) {
	r, raw, err := unary(ctx, c, false, c.auth.Login, &pb.LoginRequest{Username: req.Username, Password: req.Password, TotpCode: req.TOTPCode})
	return tokenResponse{Token: r.GetToken(), ExpiresAt: r.GetExpiresAt()}, raw, err
}

func (c *GRPCClient) Logout(ctx context.Context) (Raw, error) {
	_, raw, err := unary(ctx, c, true, c.auth.Logout, &pb.LogoutRequest{})
	return raw, err
}

func (c *GRPCClient) Renew(ctx context.Context) (tokenResponse, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.auth.Renew, &pb.RenewRequest{})
	return tokenResponse{Token: r.GetToken(), ExpiresAt: r.GetExpiresAt()}, raw, err
}

func (c *GRPCClient) Me(ctx context.Context) (account, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.auth.Me, &pb.MeRequest{})
	return fromAccount(r), raw, err
}

func (c *GRPCClient) ChangePassword(ctx context.Context, current, next string) (Raw, error) {
	_, raw, err := unary(ctx, c, true, c.auth.ChangePassword, &pb.ChangePasswordRequest{CurrentPassword: current, NewPassword: next})
	return raw, err
}

func (c *GRPCClient) EnrollTOTP(ctx context.Context) (totpEnrollment, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.auth.EnrollTOTP, &pb.EnrollTOTPRequest{})
	return totpEnrollment{Secret: r.GetSecret(), OTPAuthURI: r.GetOtpauthUri()}, raw, err
}

func (c *GRPCClient) ConfirmTOTP(ctx context.Context, code string) (Raw, error) {
	_, raw, err := unary(ctx, c, true, c.auth.ConfirmTOTP, &pb.ConfirmTOTPRequest{Code: code})
	return raw, err
}

func (c *GRPCClient) RemoveTOTP(ctx context.Context, id string) (Raw, error) {
	_, raw, err := unary(ctx, c, true, c.auth.RemoveTOTP, &pb.RemoveTOTPRequest{AccountId: id})
	return raw, err
}

func (c *GRPCClient) ValidateToken(ctx context.Context, req validateRequest) (validation, Raw, error) {
	r, raw, err := unary(ctx, c, false, c.tokens.ValidateToken, &pb.ValidateTokenRequest{Token: req.Token, Audience: req.Audience})
	return validation{
		Valid: r.GetValid(), Sub: r.GetSub(), Username: r.GetUsername(), AccountType: r.GetAccountType(),
		Roles: r.GetRoles(), ExpiresAt: r.GetExpiresAt(), JTI: r.GetJti(),
	}, raw, err
}

func (c *GRPCClient) IssueToken(ctx context.Context, req issueRequest) (tokenResponse, Raw, error) {
	in := &pb.IssueServiceTokenRequest{AccountId: req.AccountID, Audience: req.Audience}
	if req.TTLSeconds != 0 {
		in.TtlSeconds = proto.Int64(req.TTLSeconds)
	}
	r, raw, err := unary(ctx, c, true, c.tokens.IssueServiceToken, in)
	return tokenResponse{Token: r.GetToken(), ExpiresAt: r.GetExpiresAt()}, raw, err
}

func (c *GRPCClient) RevokeToken(ctx context.Context, jti string) (Raw, error) {
	_, raw, err := unary(ctx, c, true, c.tokens.RevokeToken, &pb.RevokeTokenRequest{Jti: jti})
	return raw, err
}

func (c *GRPCClient) ListAccounts(ctx context.Context, q accountQuery) (accountPage, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.account.List, &pb.ListAccountsRequest{
		Type: q.Type, Status: q.Status, Role: q.Role, Limit: int32(q.Limit), Cursor: q.Cursor,
	})
	out := accountPage{NextCursor: r.GetNextCursor()}
	for _, a := range r.GetAccounts() {
		out.Accounts = append(out.Accounts, fromAccount(a))
	}
	return out, raw, err
}

func (c *GRPCClient) CreateAccount(ctx context.Context, req createAccountRequest) (account, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.account.Create, &pb.CreateAccountRequest{Username: req.Username, AccountType: req.AccountType, Password: req.Password})
	return fromAccount(r), raw, err
}

func (c *GRPCClient) GetAccount(ctx context.Context, id string) (account, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.account.Get, &pb.GetAccountRequest{Id: id})
	return fromAccount(r), raw, err
}

func (c *GRPCClient) UpdateAccount(ctx context.Context, id, st string) (account, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.account.Update, &pb.UpdateAccountRequest{Id: id, Status: proto.String(st)})
	return fromAccount(r), raw, err
}

func (c *GRPCClient) DeleteAccount(ctx context.Context, id string) (Raw, error) {
	_, raw, err := unary(ctx, c, true, c.account.Delete, &pb.DeleteAccountRequest{Id: id})
	return raw, err
}

func (c *GRPCClient) SetPassword(ctx context.Context, id, password string) (Raw, error) {
	_, raw, err := unary(ctx, c, true, c.account.SetPassword, &pb.SetPasswordRequest{Id: id, Password: password})
	return raw, err
}

func (c *GRPCClient) GetRoles(ctx context.Context, id string) (rolesBody, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.account.GetRoles, &pb.GetRolesRequest{Id: id})
	return rolesBody{Roles: r.GetRoles()}, raw, err
}

func (c *GRPCClient) SetRoles(ctx context.Context, id string, roles []string) (rolesBody, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.account.SetRoles, &pb.SetRolesRequest{Id: id, Roles: roles})
	return rolesBody{Roles: r.GetRoles()}, raw, err
}

func (c *GRPCClient) GetPGCreds(ctx context.Context, id string) (pgCreds, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.creds.GetPGCreds, &pb.GetPGCredsRequest{AccountId: id})
	return pgCreds{Host: r.GetHost(), Port: int(r.GetPort()), Database: r.GetDatabase(), Username: r.GetUsername(), Password: r.GetPassword()}, raw, err
}

func (c *GRPCClient) SetPGCreds(ctx context.Context, id string, pc pgCreds) (Raw, error) {
	_, raw, err := unary(ctx, c, true, c.creds.SetPGCreds, &pb.SetPGCredsRequest{AccountId: id, Creds: &pb.PGCreds{
		Host: pc.Host, Port: int32(pc.Port), Database: pc.Database, Username: pc.Username, Password: pc.Password,
	}})
	return raw, err
}

func (c *GRPCClient) ListAudit(ctx context.Context, q auditQuery) (auditPage, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.audit.ListEvents, &pb.ListEventsRequest{
		Type: q.Type, AccountId: q.AccountID, Since: q.Since, Limit: int32(q.Limit), Cursor: q.Cursor,
	})
	out := auditPage{NextCursor: r.GetNextCursor()}
	for _, e := range r.GetEvents() {
		out.Events = append(out.Events, auditEvent{
			ID: e.GetId(), Time: e.GetTime(), Type: e.GetType(), ActorID: e.GetActorId(), AccountID: e.GetAccountId(),
			IP: e.GetIp(), RequestID: e.GetRequestId(), Outcome: e.GetOutcome(), Details: e.GetDetails(),
		})
	}
	return out, raw, err
}

func (c *GRPCClient) ReadChain(ctx context.Context, afterSeq int64, limit int) (chainPage, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.audit.ReadChain, &pb.ReadChainRequest{AfterSeq: afterSeq, Limit: int32(limit)})
	out := chainPage{Events: make([]chainEvent, 0, len(r.GetEvents()))}
	for _, e := range r.GetEvents() {
		out.Events = append(out.Events, chainEvent{
			Seq: e.GetSeq(),
			auditEvent: auditEvent{
				ID: e.GetId(), Time: e.GetTime(), Type: e.GetType(), ActorID: e.GetActorId(), AccountID: e.GetAccountId(),
				IP: e.GetIp(), RequestID: e.GetRequestId(), Outcome: e.GetOutcome(), Details: e.GetDetails(),
			},
			PrevHash: e.GetPrevHash(), Hash: e.GetHash(),
		})
	}
	return out, raw, err
}

func (c *GRPCClient) ListKeys(ctx context.Context) (signingKeys, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.admin.ListKeys, &pb.ListKeysRequest{})
	out := signingKeys{Keys: make([]signingKey, 0, len(r.GetKeys()))}
	for _, k := range r.GetKeys() {
		out.Keys = append(out.Keys, signingKey{Kid: k.GetKid(), State: k.GetState(), CreatedAt: k.GetCreatedAt(), StateSince: k.GetStateSince(), JWK: fromJWK(k.GetJwk())})
	}
	return out, raw, err
}

func (c *GRPCClient) RotateKeys(ctx context.Context, emergency bool) (rotateResult, Raw, error) {
	r, raw, err := unary(ctx, c, true, c.admin.RotateKeys, &pb.RotateKeysRequest{Emergency: emergency})
	if err != nil {
		return rotateResult{}, nil, err
	}
	out := rotateResult{RevokedTokens: int(r.GetRevokedTokens())}
	for _, k := range r.GetKeys() {
		created, err1 := time.Parse(time.RFC3339Nano, k.GetCreatedAt())
		since, err2 := time.Parse(time.RFC3339Nano, k.GetStateSince())
		if err := errors.Join(err1, err2); err != nil {
			return rotateResult{}, nil, fmt.Errorf("the server sent a malformed key state: %w", err)
		}
		out.Keys = append(out.Keys, rotateKey{Kid: k.GetKid(), State: k.GetState(), CreatedAt: created, StateSince: since})
	}
	if v := r.GetActivatesAt(); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return rotateResult{}, nil, fmt.Errorf("the server sent a malformed activates_at: %w", err)
		}
		out.ActivatesAt = &t
	}
	return out, raw, nil
}
