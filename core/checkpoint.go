package core

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/storage"
)

// Checkpoints. Storage chains every event to the one before it
// (audit.ChainHash), so changing, dropping or reordering a stored event
// breaks every later link. The chain alone does not show that the log was
// cut short or rewritten from some point on with fresh hashes: whoever
// can write the database can do that. A checkpoint closes that gap up to
// its Seq: it is the chain head (Seq, Hash) signed with the active token
// signing key through custody, stored as an audit.Checkpoint event and so
// forwarded to every sink. A verifier holding the public key checks the
// chain up to a checkpoint; a sink's copy of the checkpoint shows what the
// log held at that point even if the database is later truncated.
//
// A checkpoint is written every CheckpointEvery when the head moved, that
// is, unless the newest event is a checkpoint of the event just before it
// (so nodes and restarts agree without any state of their own), by the
// node holding the lease "audit-checkpoint", and once more at graceful
// shutdown.

// Checkpoint signs the current chain head and stores it as an
// audit.Checkpoint event, unless the head is a checkpoint of its
// predecessor already or the log is empty. It reports whether it wrote one. The background loop
// calls it; tests call it directly.
func (s *Service) Checkpoint(ctx context.Context) (bool, error) {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	evs, err := s.store.Audit().ListEvents(ctx, storage.EventFilter{Limit: 1})
	if err != nil {
		return false, fmt.Errorf("core: checkpoint: read head: %w", err)
	}
	if len(evs) == 0 {
		return false, nil
	}
	head := evs[0]
	// A checkpoint of the event just before it leaves nothing unsigned;
	// one that an event slipped in ahead of (written concurrently) does.
	if head.Type == audit.Checkpoint && head.Details["seq"] == strconv.FormatInt(head.Seq-1, 10) {
		return false, nil
	}
	if len(head.Hash) != audit.HashSize {
		return false, fmt.Errorf("core: checkpoint: event %d has no chain hash (the store does not chain events): %w", head.Seq, sdk.ErrNotImplemented)
	}
	key, err := s.ActiveKey(ctx)
	if err != nil {
		return false, fmt.Errorf("core: checkpoint: %w", err)
	}
	sig, err := s.cust.Sign(ctx, key.KID, audit.CheckpointMessage(head.Seq, head.Hash))
	if err != nil {
		return false, fmt.Errorf("core: checkpoint: sign: %w", err)
	}
	ev := s.event(Caller{}, audit.Checkpoint, "", audit.Success, map[string]string{
		"seq":  strconv.FormatInt(head.Seq, 10),
		"hash": hex.EncodeToString(head.Hash),
		"kid":  key.KID,
		"sig":  base64.RawURLEncoding.EncodeToString(sig),
	})
	if err := s.appendEvent(ctx, ev); err != nil {
		return false, fmt.Errorf("core: checkpoint: %w", err)
	}
	return true, nil
}

// checkpointLoop writes a checkpoint every period while this process
// holds the checkpoint lease. A failure is logged and the next period
// tries again; nothing waits for it.
func (s *Service) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Audit.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := s.Checkpoint(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("core: audit checkpoint failed; retried next period", "err", err)
		}
	}
}
