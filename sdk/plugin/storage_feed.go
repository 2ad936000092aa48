package plugin

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/plugin/internal/pb/storagev1"
	"github.com/metacircular/mcias/sdk/storage"
)

// The optional change feed crosses the wire as one server-streaming RPC
// per watch.

var _ storage.ChangeFeed = (*storageClient)(nil)

// WatchChanges implements storage.ChangeFeed on the plugin side: it
// streams the backend's feed until the host goes away or the feed ends.
func (s *storageServer) WatchChanges(_ *storagev1.WatchChangesRequest, stream grpc.ServerStreamingServer[storagev1.ChangeNotice]) error {
	st, err := s.store.get()
	if err != nil {
		return toStatus(err)
	}
	feed, ok := st.(storage.ChangeFeed)
	if !ok {
		return toStatus(fmt.Errorf("watch changes: %w: the backend has no change feed", sdk.ErrNotImplemented))
	}
	ch, err := feed.WatchChanges(stream.Context())
	if err != nil {
		return toStatus(err)
	}
	for c := range ch {
		if err := stream.Send(&storagev1.ChangeNotice{AccountId: c.AccountID}); err != nil {
			return err
		}
	}
	// The backend closed its feed: the store closed or the host left.
	return toStatus(fmt.Errorf("watch changes: %w: the feed ended", sdk.ErrUnavailable))
}

// WatchChanges implements storage.ChangeFeed on the host side. It waits
// for the first notice, so a plugin without a feed answers
// sdk.ErrNotImplemented here rather than on the channel. The channel
// closes when ctx ends or the stream breaks (the plugin died or closed
// its store); the caller watches again once the plugin is back.
func (s *storageClient) WatchChanges(ctx context.Context) (<-chan storage.Change, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := s.c.WatchChanges(ctx, &storagev1.WatchChangesRequest{})
	if err != nil {
		cancel()
		return nil, fromStatus("storage plugin: watch changes", err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, fromStatus("storage plugin: watch changes", err)
	}
	out := make(chan storage.Change, 64)
	go func() {
		defer cancel()
		defer close(out)
		n := first
		for {
			select {
			case out <- storage.Change{AccountID: n.GetAccountId()}:
			case <-ctx.Done():
				return
			}
			if n, err = stream.Recv(); err != nil {
				return
			}
		}
	}()
	return out, nil
}
