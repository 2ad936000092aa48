package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// The optional leases cross the wire as one unary RPC per call. The host
// learns from Open whether the plugin's store has them, and only then is
// its client a storage.Leaser (leasingClient), so a host can test for the
// capability with a type assertion as it would on an in-process store.

// leasingClient is the client shim of a plugin whose store has leases.
type leasingClient struct{ *storageClient }

var _ storage.Leaser = (*leasingClient)(nil)

// AcquireLease implements storage.Leaser on the plugin side.
func (s *storageServer) AcquireLease(ctx context.Context, req *storagev1.AcquireLeaseRequest) (*storagev1.AcquireLeaseResponse, error) {
	l, err := s.leaser("acquire lease")
	if err != nil {
		return nil, toStatus(err)
	}
	ok, err := l.AcquireLease(ctx, req.GetName(), req.GetHolder(), time.Duration(req.GetTtlNanos()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.AcquireLeaseResponse{Acquired: ok}, nil
}

// ReleaseLease implements storage.Leaser on the plugin side.
func (s *storageServer) ReleaseLease(ctx context.Context, req *storagev1.ReleaseLeaseRequest) (*storagev1.ReleaseLeaseResponse, error) {
	l, err := s.leaser("release lease")
	if err != nil {
		return nil, toStatus(err)
	}
	if err := l.ReleaseLease(ctx, req.GetName(), req.GetHolder()); err != nil {
		return nil, toStatus(err)
	}
	return &storagev1.ReleaseLeaseResponse{}, nil
}

func (s *storageServer) leaser(op string) (storage.Leaser, error) {
	st, err := s.store.get()
	if err != nil {
		return nil, err
	}
	l, ok := st.(storage.Leaser)
	if !ok {
		return nil, fmt.Errorf("%s: %w: the backend has no leases", op, sdk.ErrNotImplemented)
	}
	return l, nil
}

// AcquireLease implements storage.Leaser on the host side.
func (s *leasingClient) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	resp, err := s.c.AcquireLease(ctx, &storagev1.AcquireLeaseRequest{Name: name, Holder: holder, TtlNanos: int64(ttl)})
	if err != nil {
		return false, fromStatus("storage plugin: acquire lease", err)
	}
	return resp.GetAcquired(), nil
}

// ReleaseLease implements storage.Leaser on the host side.
func (s *leasingClient) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.c.ReleaseLease(ctx, &storagev1.ReleaseLeaseRequest{Name: name, Holder: holder})
	return fromStatus("storage plugin: release lease", err)
}
