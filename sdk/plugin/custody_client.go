package plugin

import (
	"context"
	"time"

	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/custodyv1"
)

// custodyClient is the host-side shim: a custody.Custodian whose every
// method is one RPC to the plugin.
type custodyClient struct {
	c custodyv1.CustodianClient
}

var (
	_ custody.Custodian   = (*custodyClient)(nil)
	_ custody.Rotator     = (*custodyClient)(nil)
	_ custody.KeyImporter = (*custodyClient)(nil)
	_ custody.KeyHistory  = (*custodyClient)(nil)
)

func (c *custodyClient) open(ctx context.Context, uri string) error {
	_, err := c.c.Open(ctx, &custodyv1.OpenRequest{Uri: uri})
	return fromStatus("custody plugin: open", err)
}

func (c *custodyClient) Info(ctx context.Context) (custody.Info, error) {
	resp, err := c.c.Info(ctx, &custodyv1.InfoRequest{})
	if err != nil {
		return custody.Info{}, fromStatus("custody plugin: info", err)
	}
	return custody.Info{Name: resp.GetName(), Rotation: resp.GetRotation()}, nil
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

// The client shim always offers custody.Rotator; a plugin whose custodian
// does not rotate answers sdk.ErrNotImplemented (and Info.Rotation is
// false).

func (c *custodyClient) CreateNextKey(ctx context.Context, at time.Time) (custody.PublicKey, error) {
	resp, err := c.c.CreateNextKey(ctx, &custodyv1.CreateNextKeyRequest{At: custodyTimeToPB(at)})
	if err != nil {
		return custody.PublicKey{}, fromStatus("custody plugin: create next key", err)
	}
	return publicKeyFromPB(resp.GetKey()), nil
}

func (c *custodyClient) ActivateKey(ctx context.Context, kid string, at time.Time) error {
	_, err := c.c.ActivateKey(ctx, &custodyv1.ActivateKeyRequest{Kid: kid, At: custodyTimeToPB(at)})
	return fromStatus("custody plugin: activate key", err)
}

func (c *custodyClient) RetireKey(ctx context.Context, kid string, at time.Time) error {
	_, err := c.c.RetireKey(ctx, &custodyv1.RetireKeyRequest{Kid: kid, At: custodyTimeToPB(at)})
	return fromStatus("custody plugin: retire key", err)
}

func (c *custodyClient) ImportRetiringKey(ctx context.Context, pub custody.PublicKey, at time.Time) error {
	_, err := c.c.ImportRetiringKey(ctx, &custodyv1.ImportRetiringKeyRequest{Key: publicKeyToPB(pub), At: custodyTimeToPB(at)})
	return fromStatus("custody plugin: import retiring key", err)
}

// AllPublicKeys implements custody.KeyHistory; a plugin whose custodian
// keeps no retired keys answers sdk.ErrNotImplemented.
func (c *custodyClient) AllPublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	resp, err := c.c.AllPublicKeys(ctx, &custodyv1.AllPublicKeysRequest{})
	if err != nil {
		return nil, fromStatus("custody plugin: all public keys", err)
	}
	return publicKeysFromPB(resp.GetKeys()), nil
}
