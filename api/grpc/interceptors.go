package grpc

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/metacircular/mcias/api/frontend"
	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
	"github.com/metacircular/mcias/core"
)

// access is who may call a method.
type access int

const (
	public access = iota // no token (the public REST routes)
	authed               // any valid token
	admin                // a valid token with the admin role
)

// rule is a method's access and whether it checks a password (and so
// draws on the per-IP limiter).
type rule struct {
	access   access
	password bool
}

// methodRules holds every method the server serves. New refuses to start
// when a registered method is missing, and the default is no access.
var methodRules = map[string]rule{
	pb.AdminService_Health_FullMethodName:       {access: public},
	pb.AdminService_Ready_FullMethodName:        {access: public},
	pb.AdminService_GetPublicKey_FullMethodName: {access: public},
	pb.AdminService_GetJWKS_FullMethodName:      {access: public},
	pb.AdminService_ListKeys_FullMethodName:     {access: admin},
	pb.AdminService_RotateKeys_FullMethodName:   {access: admin},

	pb.AuthService_Login_FullMethodName:          {access: public, password: true},
	pb.AuthService_Logout_FullMethodName:         {access: authed},
	pb.AuthService_Renew_FullMethodName:          {access: authed},
	pb.AuthService_Me_FullMethodName:             {access: authed},
	pb.AuthService_ChangePassword_FullMethodName: {access: authed, password: true},
	pb.AuthService_EnrollTOTP_FullMethodName:     {access: authed},
	pb.AuthService_ConfirmTOTP_FullMethodName:    {access: authed},
	pb.AuthService_RemoveTOTP_FullMethodName:     {access: admin},

	pb.TokenService_ValidateToken_FullMethodName:     {access: public},
	pb.TokenService_IssueServiceToken_FullMethodName: {access: admin},
	pb.TokenService_RevokeToken_FullMethodName:       {access: admin},

	pb.AccountService_List_FullMethodName:        {access: admin},
	pb.AccountService_Create_FullMethodName:      {access: admin},
	pb.AccountService_Get_FullMethodName:         {access: admin},
	pb.AccountService_Update_FullMethodName:      {access: admin},
	pb.AccountService_Delete_FullMethodName:      {access: admin},
	pb.AccountService_SetPassword_FullMethodName: {access: admin},
	pb.AccountService_GetRoles_FullMethodName:    {access: admin},
	pb.AccountService_SetRoles_FullMethodName:    {access: admin},

	pb.CredentialService_GetPGCreds_FullMethodName: {access: admin},
	pb.CredentialService_SetPGCreds_FullMethodName: {access: admin},

	pb.AuditService_ListEvents_FullMethodName: {access: admin},
	pb.AuditService_ReadChain_FullMethodName:  {access: admin},

	healthpb.Health_Check_FullMethodName: {access: public},
	healthpb.Health_List_FullMethodName:  {access: public},
	healthpb.Health_Watch_FullMethodName: {access: public},
	// Reflection only describes the schema, which is public anyway.
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {access: public},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {access: public},
}

// callInfo is what the interceptors learn about a call; handlers read it
// through caller.
type callInfo struct {
	requestID string
	ip        string
	principal *core.Principal
}

type callInfoKey struct{}

// caller builds the core.Caller of the call.
func caller(ctx context.Context) core.Caller {
	ci, _ := ctx.Value(callInfoKey{}).(*callInfo)
	if ci == nil {
		return core.Caller{}
	}
	return core.Caller{Principal: ci.principal, IP: ci.ip, RequestID: ci.requestID}
}

const (
	mdRequestID    = "x-request-id"
	mdRetryAfter   = "retry-after"
	mdAuthorize    = "authorization"
	mdForwardedFor = "x-forwarded-for"
)

// begin sets up the call: its request ID (the client's when well formed,
// echoed in the response header) and client IP.
func (s *Server) begin(ctx context.Context) (context.Context, *callInfo) {
	md, _ := metadata.FromIncomingContext(ctx)
	ci := &callInfo{requestID: frontend.RequestID(first(md, mdRequestID))}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		ci.ip = s.ips.Resolve(p.Addr.String(), md.Get(mdForwardedFor))
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(mdRequestID, ci.requestID))
	return context.WithValue(ctx, callInfoKey{}, ci), ci
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// admit applies the method's access rule and the password limit.
func (s *Server) admit(ctx context.Context, method string, ci *callInfo) error {
	r, ok := methodRules[method]
	if !ok {
		return status.Error(codes.PermissionDenied, "no access rule for this method")
	}
	if r.access != public {
		md, _ := metadata.FromIncomingContext(ctx)
		tok, ok := bearerToken(first(md, mdAuthorize))
		if !ok {
			return newStatus(frontend.UnauthRow, frontend.UnauthRow.Msg).Err()
		}
		p, err := s.svc.Authenticate(ctx, tok)
		if err != nil {
			return err
		}
		ci.principal = p
		// Checked before any handler runs; core checks again.
		if r.access == admin && !p.IsAdmin() {
			return newStatus(frontend.ForbiddenRow, frontend.ForbiddenRow.Msg).Err()
		}
	}
	if r.password {
		ok, wait, err := s.limit.Allow(ctx, ci.ip, time.Now())
		if err != nil {
			s.log.Warn("login limiter unavailable; attempt refused", "err", err)
			row := frontend.LimiterUnavailableRow
			return newStatus(row, row.Msg).Err()
		}
		if !ok {
			// Whole seconds, rounded up, as REST's Retry-After.
			secs := int64(math.Ceil(wait.Seconds()))
			_ = grpc.SetHeader(ctx, metadata.Pairs(mdRetryAfter, strconv.FormatInt(secs, 10)))
			return rateLimited(time.Duration(secs) * time.Second)
		}
	}
	return nil
}

func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// unaryInterceptor runs every unary call: set up, admit, handle with
// panic recovery, map errors, log one line.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	ctx, ci := s.begin(ctx)
	err = s.admit(ctx, info.FullMethod, ci)
	if err == nil {
		resp, err = s.recovered(ctx, info.FullMethod, ci, func() (any, error) { return handler(ctx, req) })
	}
	err = s.finish(ctx, info.FullMethod, ci, start, err)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// streamInterceptor runs the streaming calls (health Watch, reflection).
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx, ci := s.begin(ss.Context())
	err := s.admit(ctx, info.FullMethod, ci)
	if err == nil {
		_, err = s.recovered(ctx, info.FullMethod, ci, func() (any, error) {
			return nil, handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
		})
	}
	return s.finish(ctx, info.FullMethod, ci, start, err)
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// recovered runs fn, turning a panic into INTERNAL; the panic value goes
// to the log only.
func (s *Server) recovered(ctx context.Context, method string, ci *callInfo, fn func() (any, error)) (resp any, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.log.ErrorContext(ctx, "panic in handler", "method", method, "request_id", ci.requestID, "panic", fmt.Sprint(v))
			resp, err = nil, newStatus(frontend.InternalRow, frontend.InternalRow.Msg).Err()
		}
	}()
	return fn()
}

// finish maps err to a status and writes the access log line: method,
// code, duration, IP, request ID. Messages and metadata are never logged,
// so no password, token, code or secret can reach the log; the text of an
// unexpected error is, since it never reaches the client.
func (s *Server) finish(ctx context.Context, method string, ci *callInfo, start time.Time, err error) error {
	out, serverFault := toStatusError(err)
	level := slog.LevelInfo
	if serverFault {
		level = slog.LevelError
	}
	if !s.log.Enabled(ctx, level) {
		return out // the hot path at level warn: build no log line at all
	}
	code := status.Code(out)
	attrs := []any{
		"method", method,
		"code", code.String(),
		"duration_ms", float64(time.Since(start).Microseconds()) / 1000,
		"ip", ci.ip,
		"request_id", ci.requestID,
	}
	if serverFault {
		attrs = append(attrs, "error", err.Error())
	}
	s.log.Log(ctx, level, "rpc", attrs...)
	return out
}
