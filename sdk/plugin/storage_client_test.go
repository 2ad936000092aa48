package plugin

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
)

// lyingStorage answers with success but not the record asked for, as a
// buggy plugin (perhaps not written in Go) might.
type lyingStorage struct {
	storagev1.UnimplementedStorageServer
}

func (lyingStorage) GetToken(context.Context, *storagev1.GetTokenRequest) (*storagev1.GetTokenResponse, error) {
	return &storagev1.GetTokenResponse{}, nil // no token at all
}

func (lyingStorage) GetAccount(context.Context, *storagev1.GetAccountRequest) (*storagev1.GetAccountResponse, error) {
	return &storagev1.GetAccountResponse{Account: &storagev1.Account{Id: "someone-else"}}, nil
}

func (lyingStorage) GetAccountByUsername(context.Context, *storagev1.GetAccountByUsernameRequest) (*storagev1.GetAccountByUsernameResponse, error) {
	return &storagev1.GetAccountByUsernameResponse{Account: &storagev1.Account{Id: "x", Username: "mallory"}}, nil
}

func (lyingStorage) GetPGCreds(context.Context, *storagev1.GetPGCredsRequest) (*storagev1.GetPGCredsResponse, error) {
	return &storagev1.GetPGCredsResponse{}, nil
}

// TestMalformedAnswersAreErrors: a success that does not carry the record
// asked for is ErrInternal, never a zero value; an empty token record
// would otherwise pass for a token that is not revoked.
func TestMalformedAnswersAreErrors(t *testing.T) {
	cli := &storageClient{}
	stop, err := serveOverGRPC(func(s *grpc.Server) { storagev1.RegisterStorageServer(s, lyingStorage{}) },
		func(c *grpc.ClientConn) { cli.c = storagev1.NewStorageClient(c) },
		func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx := t.Context()
	_, errToken := cli.GetToken(ctx, "jti-1")
	_, errAccount := cli.GetAccount(ctx, "id-1")
	_, errName := cli.GetAccountByUsername(ctx, "alice")
	_, errCreds := cli.GetPGCreds(ctx, "id-1")
	for name, err := range map[string]error{"GetToken": errToken, "GetAccount": errAccount,
		"GetAccountByUsername": errName, "GetPGCreds": errCreds} {
		if !errors.Is(err, sdk.ErrInternal) {
			t.Errorf("%s on a malformed answer = %v, want ErrInternal", name, err)
		}
	}
	// A method the plugin does not implement (an older protocol) is
	// ErrNotImplemented.
	if err := cli.Ping(ctx); !errors.Is(err, sdk.ErrNotImplemented) {
		t.Errorf("Ping on a plugin without it = %v, want ErrNotImplemented", err)
	}
}
