package parity

import (
	"net/http"

	"google.golang.org/protobuf/proto"

	pb "github.com/metacircular/mcias/api/grpc/mciasv1"
)

// op is one operation of the contract on both transports. Args are one
// JSON object: REST takes {name} path parameters out of it and sends the
// rest as the body (or the query, for lists); gRPC reads it, with proto
// field names, into the request message.
type op struct {
	method, path string
	query        bool
	rpc          string
	newReq       func() proto.Message
	newResp      func() proto.Message
	grpcArgs     func(map[string]any) map[string]any // reshape for gRPC
}

func msg[T any, P interface {
	*T
	proto.Message
}]() func() proto.Message {
	return func() proto.Message { return P(new(T)) }
}

const readyRPC = pb.AdminService_Ready_FullMethodName

// ops holds every operation of CONTRACT.md; TestEveryOperationHasScenarios
// checks that each is exercised.
var ops = map[string]op{
	"health":  {method: http.MethodGet, path: "/v1/health", rpc: pb.AdminService_Health_FullMethodName, newReq: msg[pb.HealthRequest](), newResp: msg[pb.HealthResponse]()},
	"ready":   {method: http.MethodGet, path: "/v1/ready", rpc: readyRPC, newReq: msg[pb.ReadyRequest](), newResp: msg[pb.ReadyResponse]()},
	"pubkey":  {method: http.MethodGet, path: "/v1/keys/public", rpc: pb.AdminService_GetPublicKey_FullMethodName, newReq: msg[pb.GetPublicKeyRequest](), newResp: msg[pb.JWK]()},
	"jwks":    {method: http.MethodGet, path: "/.well-known/jwks.json", rpc: pb.AdminService_GetJWKS_FullMethodName, newReq: msg[pb.GetJWKSRequest](), newResp: msg[pb.GetJWKSResponse]()},
	"login":   {method: http.MethodPost, path: "/v1/auth/login", rpc: pb.AuthService_Login_FullMethodName, newReq: msg[pb.LoginRequest](), newResp: msg[pb.LoginResponse]()},
	"logout":  {method: http.MethodPost, path: "/v1/auth/logout", rpc: pb.AuthService_Logout_FullMethodName, newReq: msg[pb.LogoutRequest](), newResp: msg[pb.LogoutResponse]()},
	"renew":   {method: http.MethodPost, path: "/v1/auth/renew", rpc: pb.AuthService_Renew_FullMethodName, newReq: msg[pb.RenewRequest](), newResp: msg[pb.RenewResponse]()},
	"me":      {method: http.MethodGet, path: "/v1/auth/me", rpc: pb.AuthService_Me_FullMethodName, newReq: msg[pb.MeRequest](), newResp: msg[pb.Account]()},
	"passwd":  {method: http.MethodPut, path: "/v1/auth/password", rpc: pb.AuthService_ChangePassword_FullMethodName, newReq: msg[pb.ChangePasswordRequest](), newResp: msg[pb.ChangePasswordResponse]()},
	"enroll":  {method: http.MethodPost, path: "/v1/auth/totp/enroll", rpc: pb.AuthService_EnrollTOTP_FullMethodName, newReq: msg[pb.EnrollTOTPRequest](), newResp: msg[pb.EnrollTOTPResponse]()},
	"confirm": {method: http.MethodPost, path: "/v1/auth/totp/confirm", rpc: pb.AuthService_ConfirmTOTP_FullMethodName, newReq: msg[pb.ConfirmTOTPRequest](), newResp: msg[pb.ConfirmTOTPResponse]()},
	"rmtotp":  {method: http.MethodDelete, path: "/v1/accounts/{account_id}/totp", rpc: pb.AuthService_RemoveTOTP_FullMethodName, newReq: msg[pb.RemoveTOTPRequest](), newResp: msg[pb.RemoveTOTPResponse]()},

	"validate": {method: http.MethodPost, path: "/v1/token/validate", rpc: pb.TokenService_ValidateToken_FullMethodName, newReq: msg[pb.ValidateTokenRequest](), newResp: msg[pb.ValidateTokenResponse]()},
	"issue":    {method: http.MethodPost, path: "/v1/token/issue", rpc: pb.TokenService_IssueServiceToken_FullMethodName, newReq: msg[pb.IssueServiceTokenRequest](), newResp: msg[pb.IssueServiceTokenResponse]()},
	"revoke":   {method: http.MethodDelete, path: "/v1/token/{jti}", rpc: pb.TokenService_RevokeToken_FullMethodName, newReq: msg[pb.RevokeTokenRequest](), newResp: msg[pb.RevokeTokenResponse]()},

	"list":     {method: http.MethodGet, path: "/v1/accounts", query: true, rpc: pb.AccountService_List_FullMethodName, newReq: msg[pb.ListAccountsRequest](), newResp: msg[pb.ListAccountsResponse]()},
	"create":   {method: http.MethodPost, path: "/v1/accounts", rpc: pb.AccountService_Create_FullMethodName, newReq: msg[pb.CreateAccountRequest](), newResp: msg[pb.Account]()},
	"get":      {method: http.MethodGet, path: "/v1/accounts/{id}", rpc: pb.AccountService_Get_FullMethodName, newReq: msg[pb.GetAccountRequest](), newResp: msg[pb.Account]()},
	"update":   {method: http.MethodPatch, path: "/v1/accounts/{id}", rpc: pb.AccountService_Update_FullMethodName, newReq: msg[pb.UpdateAccountRequest](), newResp: msg[pb.Account]()},
	"delete":   {method: http.MethodDelete, path: "/v1/accounts/{id}", rpc: pb.AccountService_Delete_FullMethodName, newReq: msg[pb.DeleteAccountRequest](), newResp: msg[pb.DeleteAccountResponse]()},
	"setpw":    {method: http.MethodPut, path: "/v1/accounts/{id}/password", rpc: pb.AccountService_SetPassword_FullMethodName, newReq: msg[pb.SetPasswordRequest](), newResp: msg[pb.SetPasswordResponse]()},
	"getroles": {method: http.MethodGet, path: "/v1/accounts/{id}/roles", rpc: pb.AccountService_GetRoles_FullMethodName, newReq: msg[pb.GetRolesRequest](), newResp: msg[pb.Roles]()},
	"setroles": {method: http.MethodPut, path: "/v1/accounts/{id}/roles", rpc: pb.AccountService_SetRoles_FullMethodName, newReq: msg[pb.SetRolesRequest](), newResp: msg[pb.Roles]()},

	"getpg": {method: http.MethodGet, path: "/v1/accounts/{account_id}/pgcreds", rpc: pb.CredentialService_GetPGCreds_FullMethodName, newReq: msg[pb.GetPGCredsRequest](), newResp: msg[pb.PGCreds]()},
	"setpg": {method: http.MethodPut, path: "/v1/accounts/{account_id}/pgcreds", rpc: pb.CredentialService_SetPGCreds_FullMethodName, newReq: msg[pb.SetPGCredsRequest](), newResp: msg[pb.SetPGCredsResponse](),
		// REST sends the credentials as the body; gRPC nests them.
		grpcArgs: func(a map[string]any) map[string]any {
			creds := map[string]any{}
			for k, v := range a {
				if k != "account_id" {
					creds[k] = v
				}
			}
			return map[string]any{"account_id": a["account_id"], "creds": creds}
		}},

	"audit": {method: http.MethodGet, path: "/v1/audit", query: true, rpc: pb.AuditService_ListEvents_FullMethodName, newReq: msg[pb.ListEventsRequest](), newResp: msg[pb.ListEventsResponse]()},
	"chain": {method: http.MethodGet, path: "/v1/audit/chain", query: true, rpc: pb.AuditService_ReadChain_FullMethodName, newReq: msg[pb.ReadChainRequest](), newResp: msg[pb.ReadChainResponse]()},

	"keys":   {method: http.MethodGet, path: "/v1/keys", rpc: pb.AdminService_ListKeys_FullMethodName, newReq: msg[pb.ListKeysRequest](), newResp: msg[pb.ListKeysResponse]()},
	"rotate": {method: http.MethodPost, path: "/v1/keys/rotate", rpc: pb.AdminService_RotateKeys_FullMethodName, newReq: msg[pb.RotateKeysRequest](), newResp: msg[pb.RotateKeysResponse]()},
}
