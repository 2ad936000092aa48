package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metacircular/mcias/examples/jsonstore/jsonstore"
	"github.com/metacircular/mcias/sdk/audit"
	"github.com/metacircular/mcias/sdk/plugin"
	"github.com/metacircular/mcias/sdk/plugin/plugintest"
	"github.com/metacircular/mcias/sdk/storage"
	"github.com/metacircular/mcias/sdk/storage/storagetest"
)

// TestConformance runs the MCIAS storage suite against the backend three
// ways: in-process, through the plugin's gRPC shims in-process, and as
// this very plugin binary, started the way the MCIAS server starts it.
func TestConformance(t *testing.T) {
	uri := func(t *testing.T) string { return "jsonstore://" + filepath.Join(t.TempDir(), "state.json") }
	closeAtEnd := func(t *testing.T, s storage.Store) {
		t.Cleanup(func() { _ = s.Close(context.WithoutCancel(t.Context())) })
		// The backend has leases, and each way must expose them.
		if _, ok := s.(storage.Leaser); !ok {
			t.Fatalf("%T is no storage.Leaser", s)
		}
	}
	t.Run("way=direct", func(t *testing.T) {
		storagetest.RunTests(t, func(t *testing.T) storage.Store {
			s, err := jsonstore.Open(t.Context(), uri(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, s)
			return s
		})
	})
	t.Run("way=grpc", func(t *testing.T) {
		storagetest.RunTests(t, func(t *testing.T) storage.Store {
			s, stop, err := plugin.StorageOverGRPC(t.Context(), jsonstore.Open, uri(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			closeAtEnd(t, s)
			return s
		})
	})
	t.Run("way=plugin", func(t *testing.T) {
		bin := plugintest.Build(t, ".", ".", "jsonstore-plugin")
		storagetest.RunTests(t, func(t *testing.T) storage.Store {
			c, _ := plugintest.Start(t, plugin.KindStorage, "jsonstore", bin)
			s, err := plugin.OpenStorage(t.Context(), c, uri(t))
			if err != nil {
				t.Fatal(err)
			}
			closeAtEnd(t, s)
			return s
		})
	})
}

// TestReopen: what was stored survives a restart of the plugin.
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := jsonstore.Open(t.Context(), "jsonstore://"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := storage.Account{ID: "0b4f6a1e-1111-4222-8333-444455556666", Username: "alice", Skeleton: "alice",
		Type: storage.Human, Status: storage.Active, Roles: []string{"admin"}, Version: 1}
	if err := s.Accounts().CreateAccount(t.Context(), a, auditEvent("e1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	s, err = jsonstore.Open(t.Context(), "jsonstore://"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	got, err := s.Accounts().GetAccount(t.Context(), a.ID)
	if err != nil || got.Username != "alice" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	evs, err := s.Audit().ReadEvents(t.Context(), 0, 0)
	if err != nil || len(evs) != 1 || evs[0].ID != "e1" || evs[0].Seq != 1 {
		t.Fatalf("events after reopen: %+v, %v", evs, err)
	}
	// Seq keeps counting from the file.
	if err := s.Audit().AppendEvent(t.Context(), auditEvent("e2")); err != nil {
		t.Fatal(err)
	}
	evs, _ = s.Audit().ReadEvents(t.Context(), 1, 0)
	if len(evs) != 1 || evs[0].Seq != 2 {
		t.Fatalf("next event: %+v", evs)
	}
}

func auditEvent(id string) audit.Event {
	return audit.Event{ID: id, Time: time.Now().UTC(), Type: audit.AccountCreate, Outcome: audit.Success}
}

// TestUpgradeVersion1: a state file written before the audit chain
// (version 1) is upgraded when opened: its events are chained in Seq
// order, and new events continue the chain.
func TestUpgradeVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	v1 := `{"version":1,"accounts":{},"tokens":{},"pgcreds":{},"seq":3,"events":[
		{"ID":"e1","Seq":1,"Time":"2026-01-02T03:04:05.123456789Z","Type":"login_failure","Outcome":"failure","Details":{"reason":"bad_password"}},
		{"ID":"e2","Seq":2,"Time":"2026-01-02T03:04:06Z","Type":"plugin_start","Outcome":"success","Details":null},
		{"ID":"e3","Seq":3,"Time":"2026-01-02T03:04:07Z","Type":"login_failure","IP":"192.0.2.1","Outcome":"failure","Details":null}]}`
	if err := os.WriteFile(path, []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := jsonstore.Open(t.Context(), "jsonstore://"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	old, err := s.Audit().ReadEvents(t.Context(), 0, 0)
	if err != nil || len(old) != 3 {
		t.Fatalf("ReadEvents: %d events, %v; want 3", len(old), err)
	}
	storagetest.VerifyChain(t, old)
	if err := s.Audit().AppendEvent(t.Context(), auditEvent("e4")); err != nil {
		t.Fatal(err)
	}
	all, _ := s.Audit().ReadEvents(t.Context(), 0, 0)
	if len(all) != 4 || all[3].Seq != 4 {
		t.Fatalf("events after the upgrade: %+v", all)
	}
	storagetest.VerifyChain(t, all)
	raw, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(raw), `"version":2`) {
		t.Fatalf("the file was not rewritten at version 2: %v", err)
	}
}
