package pluginhost

import (
	"context"
	"fmt"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
	sdkplugin "github.com/metacircular/mcias/sdk/plugin"
)

// Custodian starts plugin p, opens uri in it, and returns the supervised
// custodian. Close on it stops the plugin.
func (h *Host) Custodian(ctx context.Context, p Plugin, uri string) (custody.Custodian, error) {
	s, err := start(ctx, h, p, uri, kindOps[custody.Custodian]{
		kind: sdkplugin.KindCustody,
		open: sdkplugin.OpenCustody,
		probe: func(ctx context.Context, b custody.Custodian) error {
			_, err := b.Info(ctx)
			return err
		},
		close: func(ctx context.Context, b custody.Custodian) error { return b.Close(ctx) },
	})
	if err != nil {
		return nil, err
	}
	return &supervisedCustodian{s}, nil
}

type supervisedCustodian struct {
	s *supervisor[custody.Custodian]
}

func (w *supervisedCustodian) PluginStatus() Status { return w.s.status() }

func (w *supervisedCustodian) Info(ctx context.Context) (custody.Info, error) {
	return call(w.s, ctx, func(ctx context.Context, b custody.Custodian) (custody.Info, error) { return b.Info(ctx) })
}

func (w *supervisedCustodian) PublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	return call(w.s, ctx, func(ctx context.Context, b custody.Custodian) ([]custody.PublicKey, error) { return b.PublicKeys(ctx) })
}

func (w *supervisedCustodian) Sign(ctx context.Context, kid string, msg []byte) ([]byte, error) {
	return call(w.s, ctx, func(ctx context.Context, b custody.Custodian) ([]byte, error) { return b.Sign(ctx, kid, msg) })
}

func (w *supervisedCustodian) Encrypt(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	return call(w.s, ctx, func(ctx context.Context, b custody.Custodian) ([]byte, error) { return b.Encrypt(ctx, plaintext, aad) })
}

func (w *supervisedCustodian) Decrypt(ctx context.Context, sealed, aad []byte) ([]byte, error) {
	return call(w.s, ctx, func(ctx context.Context, b custody.Custodian) ([]byte, error) { return b.Decrypt(ctx, sealed, aad) })
}

func (w *supervisedCustodian) Close(ctx context.Context) error {
	w.s.stop(ctx)
	return nil
}

// The supervised custodian offers custody.Rotator whatever the plugin's
// custodian is; one that does not rotate answers sdk.ErrNotImplemented.

func (w *supervisedCustodian) CreateNextKey(ctx context.Context, at time.Time) (custody.PublicKey, error) {
	return call(w.s, ctx, func(ctx context.Context, b custody.Custodian) (custody.PublicKey, error) {
		r, err := rotator(b)
		if err != nil {
			return custody.PublicKey{}, err
		}
		return r.CreateNextKey(ctx, at)
	})
}

func (w *supervisedCustodian) ActivateKey(ctx context.Context, kid string, at time.Time) error {
	return call0(w.s, ctx, func(ctx context.Context, b custody.Custodian) error {
		r, err := rotator(b)
		if err != nil {
			return err
		}
		return r.ActivateKey(ctx, kid, at)
	})
}

func (w *supervisedCustodian) RetireKey(ctx context.Context, kid string, at time.Time) error {
	return call0(w.s, ctx, func(ctx context.Context, b custody.Custodian) error {
		r, err := rotator(b)
		if err != nil {
			return err
		}
		return r.RetireKey(ctx, kid, at)
	})
}

func rotator(b custody.Custodian) (custody.Rotator, error) {
	r, ok := b.(custody.Rotator)
	if !ok {
		return nil, fmt.Errorf("pluginhost: custodian does not rotate keys: %w", sdk.ErrNotImplemented)
	}
	return r, nil
}

func (w *supervisedCustodian) ImportRetiringKey(ctx context.Context, pub custody.PublicKey, at time.Time) error {
	return call0(w.s, ctx, func(ctx context.Context, b custody.Custodian) error {
		im, ok := b.(custody.KeyImporter)
		if !ok {
			return fmt.Errorf("pluginhost: custodian does not import keys: %w", sdk.ErrNotImplemented)
		}
		return im.ImportRetiringKey(ctx, pub, at)
	})
}

func (w *supervisedCustodian) AllPublicKeys(ctx context.Context) ([]custody.PublicKey, error) {
	return call(w.s, ctx, func(ctx context.Context, b custody.Custodian) ([]custody.PublicKey, error) {
		h, ok := b.(custody.KeyHistory)
		if !ok {
			return nil, fmt.Errorf("pluginhost: custodian keeps no retired keys: %w", sdk.ErrNotImplemented)
		}
		return h.AllPublicKeys(ctx)
	})
}
