package plugin

import (
	"context"

	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/custodyv1"
)

// custodyClient is the host-side shim: a custody.Custodian whose every
// method is one RPC to the plugin.
type custodyClient struct {
	c custodyv1.CustodianClient
}

var _ custody.Custodian = (*custodyClient)(nil)

func (c *custodyClient) open(ctx context.Context, uri string) error {
	_, err := c.c.Open(ctx, &custodyv1.OpenRequest{Uri: uri})
	return fromStatus("custody plugin: open", err)
}

func (c *custodyClient) Info(ctx context.Context) (custody.Info, error) {
	resp, err := c.c.Info(ctx, &custodyv1.InfoRequest{})
	if err != nil {
		return custody.Info{}, fromStatus("custody plugin: info", err)
	}
	return custody.Info{Name: resp.GetName()}, nil
}

func (c *custodyClient) PublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	resp, err := c.c.PublicKeys(ctx, &custodyv1.PublicKeysRequest{})
	if err != nil {
		return nil, fromStatus("custody plugin: public keys", err)
	}
	return publicKeysFromPB(resp.GetKeys()), nil
}

func (c *custodyClient) Sign(ctx context.Context, kid string, msg []byte) ([]byte, error) {
	resp, err := c.c.Sign(ctx, &custodyv1.SignRequest{Kid: kid, Msg: msg})
	if err != nil {
		return nil, fromStatus("custody plugin: sign", err)
	}
	return resp.GetSignature(), nil
}

func (c *custodyClient) Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	resp, err := c.c.Encrypt(ctx, &custodyv1.EncryptRequest{Plaintext: plaintext, Aad: aad})
	if err != nil {
		return nil, fromStatus("custody plugin: encrypt", err)
	}
	return resp.GetSealed(), nil
}

func (c *custodyClient) Decrypt(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	resp, err := c.c.Decrypt(ctx, &custodyv1.DecryptRequest{Sealed: sealed, Aad: aad})
	if err != nil {
		return nil, fromStatus("custody plugin: decrypt", err)
	}
	// An empty plaintext crosses as absent bytes; hand back a non-nil
	// slice so success and failure stay distinguishable (nil comes only
	// with an error).
	if pt := resp.GetPlaintext(); pt != nil {
		return pt, nil
	}
	return []byte{}, nil
}

func (c *custodyClient) Close(ctx context.Context) error {
	_, err := c.c.Close(ctx, &custodyv1.CloseRequest{})
	return fromStatus("custody plugin: close", err)
}
