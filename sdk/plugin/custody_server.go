package plugin

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/custody"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/custodyv1"
)

// custodyServer is the plugin-side shim of the Custodian service.
type custodyServer struct {
	custodyv1.UnimplementedCustodianServer
	factory custody.Factory
	logger  *slog.Logger
	cust    opened[custody.Custodian]
}

func newCustodyServer(f custody.Factory, logger *slog.Logger) *custodyServer {
	return &custodyServer{factory: f, logger: logger, cust: opened[custody.Custodian]{kind: KindCustody}}
}

func (s *custodyServer) Open(ctx context.Context, req *custodyv1.OpenRequest) (*custodyv1.OpenResponse, error) {
	if err := s.cust.open(ctx, req.GetUri(), s.logger, s.factory); err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.OpenResponse{}, nil
}

func (s *custodyServer) Close(ctx context.Context, _ *custodyv1.CloseRequest) (*custodyv1.CloseResponse, error) {
	if err := s.cust.close(ctx); err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.CloseResponse{}, nil
}

func (s *custodyServer) Info(ctx context.Context, _ *custodyv1.InfoRequest) (*custodyv1.InfoResponse, error) {
	c, err := s.cust.get()
	if err != nil {
		return nil, toStatus(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	_, rotates := c.(custody.Rotator)
	return &custodyv1.InfoResponse{Name: info.Name, Rotation: info.Rotation && rotates}, nil
}

func (s *custodyServer) PublicKeys(ctx context.Context, _ *custodyv1.PublicKeysRequest) (*custodyv1.PublicKeysResponse, error) {
	c, err := s.cust.get()
	if err != nil {
		return nil, toStatus(err)
	}
	keys, err := c.PublicKeys(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.PublicKeysResponse{Keys: publicKeysToPB(keys)}, nil
}

func (s *custodyServer) Sign(ctx context.Context, req *custodyv1.SignRequest) (*custodyv1.SignResponse, error) {
	c, err := s.cust.get()
	if err != nil {
		return nil, toStatus(err)
	}
	sig, err := c.Sign(ctx, req.GetKid(), req.GetMsg())
	if err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.SignResponse{Signature: sig}, nil
}

func (s *custodyServer) Encrypt(ctx context.Context, req *custodyv1.EncryptRequest) (*custodyv1.EncryptResponse, error) {
	c, err := s.cust.get()
	if err != nil {
		return nil, toStatus(err)
	}
	sealed, err := c.Encrypt(ctx, req.GetPlaintext(), req.GetAad())
	if err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.EncryptResponse{Sealed: sealed}, nil
}

func (s *custodyServer) Decrypt(ctx context.Context, req *custodyv1.DecryptRequest) (*custodyv1.DecryptResponse, error) {
	c, err := s.cust.get()
	if err != nil {
		return nil, toStatus(err)
	}
	pt, err := c.Decrypt(ctx, req.GetSealed(), req.GetAad())
	if err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.DecryptResponse{Plaintext: pt}, nil
}

// rotator returns the opened custodian as a custody.Rotator, or
// sdk.ErrNotImplemented.
func (s *custodyServer) rotator() (custody.Rotator, error) {
	c, err := s.cust.get()
	if err != nil {
		return nil, err
	}
	r, ok := c.(custody.Rotator)
	if !ok {
		return nil, fmt.Errorf("custody plugin: this custodian does not rotate keys: %w", sdk.ErrNotImplemented)
	}
	return r, nil
}

func (s *custodyServer) CreateNextKey(ctx context.Context, req *custodyv1.CreateNextKeyRequest) (*custodyv1.CreateNextKeyResponse, error) {
	r, err := s.rotator()
	if err != nil {
		return nil, toStatus(err)
	}
	k, err := r.CreateNextKey(ctx, custodyTimeFromPB(req.GetAt()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.CreateNextKeyResponse{Key: publicKeyToPB(k)}, nil
}

func (s *custodyServer) ActivateKey(ctx context.Context, req *custodyv1.ActivateKeyRequest) (*custodyv1.ActivateKeyResponse, error) {
	r, err := s.rotator()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := r.ActivateKey(ctx, req.GetKid(), custodyTimeFromPB(req.GetAt())); err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.ActivateKeyResponse{}, nil
}

func (s *custodyServer) RetireKey(ctx context.Context, req *custodyv1.RetireKeyRequest) (*custodyv1.RetireKeyResponse, error) {
	r, err := s.rotator()
	if err != nil {
		return nil, toStatus(err)
	}
	if err := r.RetireKey(ctx, req.GetKid(), custodyTimeFromPB(req.GetAt())); err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.RetireKeyResponse{}, nil
}

func (s *custodyServer) ImportRetiringKey(ctx context.Context, req *custodyv1.ImportRetiringKeyRequest) (*custodyv1.ImportRetiringKeyResponse, error) {
	c, err := s.cust.get()
	if err != nil {
		return nil, toStatus(err)
	}
	im, ok := c.(custody.KeyImporter)
	if !ok {
		return nil, toStatus(fmt.Errorf("custody plugin: this custodian does not import keys: %w", sdk.ErrNotImplemented))
	}
	if err := im.ImportRetiringKey(ctx, publicKeyFromPB(req.GetKey()), custodyTimeFromPB(req.GetAt())); err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.ImportRetiringKeyResponse{}, nil
}

func (s *custodyServer) AllPublicKeys(ctx context.Context, _ *custodyv1.AllPublicKeysRequest) (*custodyv1.AllPublicKeysResponse, error) {
	c, err := s.cust.get()
	if err != nil {
		return nil, toStatus(err)
	}
	h, ok := c.(custody.KeyHistory)
	if !ok {
		return nil, toStatus(fmt.Errorf("custody plugin: this custodian keeps no retired keys: %w", sdk.ErrNotImplemented))
	}
	keys, err := h.AllPublicKeys(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &custodyv1.AllPublicKeysResponse{Keys: publicKeysToPB(keys)}, nil
}
