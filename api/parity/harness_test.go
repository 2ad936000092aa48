package parity

import (
	"bytes"
	"context"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/metacircular/mcias/api/frontend"
	grpcapi "github.com/metacircular/mcias/api/grpc"
	"github.com/metacircular/mcias/api/rest"
	"github.com/metacircular/mcias/backends/custody/local"
	"github.com/metacircular/mcias/backends/storage/sqlite"
	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/core/password"
	"github.com/metacircular/mcias/core/totp"
	"github.com/metacircular/mcias/sdk/storage"
)

const (
	adminPass = "correct horse battery staple"
	alicePass = "alice's long password"
	// loginBurst is small so the rate-limit scenario is short; the other
	// scenarios stay under it.
	loginBurst = 4
)

// clock is the core's time, moved forward by scenarios (TOTP steps).
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// instance is one fresh server (storage, custody, core) with fixtures:
// the bootstrap admin, a human "alice" and a system account "svc", each
// human with a session token. vars maps "$name" to fixture values, and
// names maps those values back, for normalising results.
type instance struct {
	logs  *syncBuffer // what the frontend logged
	svc   *core.Service
	store storage.Store
	clock *clock
	vars  map[string]string
}

// template is a data directory with the fixtures in place, made once:
// each instance starts from a copy, so no scenario pays for the Argon2id
// hashes of the fixtures.
var template struct {
	once sync.Once
	dir  string
	vars map[string]string
	err  error
}

func templateDir(t *testing.T) (string, map[string]string) {
	t.Helper()
	template.once.Do(func() {
		template.dir, template.err = os.MkdirTemp("", "mcias-parity-")
		if template.err == nil {
			template.vars, template.err = makeFixtures(template.dir)
		}
	})
	if template.err != nil {
		t.Fatalf("parity fixtures: %v", template.err)
	}
	return template.dir, template.vars
}

func TestMain(m *testing.M) {
	code := m.Run()
	if template.dir != "" {
		os.RemoveAll(template.dir)
	}
	os.Exit(code)
}

// open starts storage, custody and core on the data directory dir.
func open(ctx context.Context, dir string, now func() time.Time) (*core.Service, storage.Store, func(), error) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := sqlite.Open(ctx, "sqlite:"+filepath.Join(dir, "mcias.db"), logger)
	if err != nil {
		return nil, nil, nil, err
	}
	cust, err := local.Open(ctx, "local:"+filepath.Join(dir, "keys")+"?key_file="+filepath.Join(dir, "master.key"), logger)
	if err != nil {
		store.Close(ctx)
		return nil, nil, nil, err
	}
	svc, err := core.New(ctx, core.Config{
		Issuer:   "https://mcias.test",
		Password: password.Params{Time: 2, MemoryKiB: 19456, Threads: 1},
		// Steps compare the events each stored; a background checkpoint
		// landing between them would differ by timing alone (core's tests
		// cover checkpoints).
		Audit: core.AuditDelivery{CheckpointEvery: -1},
	}, core.Deps{Store: store, Custodian: cust, Logger: logger, Now: now})
	if err != nil {
		cust.Close(ctx)
		store.Close(ctx)
		return nil, nil, nil, err
	}
	closeAll := func() {
		ctx := context.Background()
		_ = svc.Close(ctx)
		_ = cust.Close(ctx)
		_ = store.Close(ctx)
	}
	return svc, store, closeAll, nil
}

// makeFixtures lays out the template: the bootstrap admin, a human
// "alice" and a system account "svc", admin and alice logged in.
func makeFixtures(dir string) (map[string]string, error) {
	ctx := context.Background()
	if err := local.GenerateKeyFile(filepath.Join(dir, "master.key")); err != nil {
		return nil, err
	}
	svc, _, closeAll, err := open(ctx, dir, time.Now)
	if err != nil {
		return nil, err
	}
	defer closeAll()
	if _, err := svc.Bootstrap(ctx, "admin", adminPass); err != nil {
		return nil, err
	}
	local := core.Caller{IP: "127.0.0.1", RequestID: "fixture"}
	adminTok, err := svc.Login(ctx, local, "admin", adminPass, "")
	if err != nil {
		return nil, err
	}
	adminP, err := svc.Authenticate(ctx, adminTok.Token)
	if err != nil {
		return nil, err
	}
	asAdmin := local
	asAdmin.Principal = adminP
	alice, err := svc.CreateAccount(ctx, asAdmin, core.NewAccount{Username: "alice", Type: storage.Human, Password: alicePass})
	if err != nil {
		return nil, err
	}
	sys, err := svc.CreateAccount(ctx, asAdmin, core.NewAccount{Username: "svc", Type: storage.System})
	if err != nil {
		return nil, err
	}
	aliceTok, err := svc.Login(ctx, local, "alice", alicePass, "")
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"$admin": adminP.AccountID, "$admin.token": adminTok.Token, "$admin.jti": adminTok.JTI,
		"$alice": alice.ID, "$alice.token": aliceTok.Token, "$alice.jti": aliceTok.JTI,
		"$svc": sys.ID,
	}, nil
}

// newInstance starts a server on a fresh copy of the template.
func newInstance(t *testing.T) *instance {
	t.Helper()
	src, vars := templateDir(t)
	dir := t.TempDir()
	if err := copyTree(src, dir); err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	svc, store, closeAll, err := open(t.Context(), dir, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAll)
	in := &instance{logs: &syncBuffer{}, svc: svc, store: store, clock: clk, vars: map[string]string{}}
	for k, v := range vars {
		in.vars[k] = v
	}
	return in
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// copyTree copies the files under src into dst, keeping their modes
// (custody refuses a key file others can read).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
}

// lastSeq is the sequence number of the newest stored audit event.
func (in *instance) lastSeq(t *testing.T) int64 {
	t.Helper()
	evs, err := in.store.Audit().ListEvents(t.Context(), storage.EventFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[0].Seq
}

// eventsAfter lists the events stored after seq, oldest first, as
// normalised maps.
func (in *instance) eventsAfter(t *testing.T, seq int64) []map[string]any {
	t.Helper()
	evs, err := in.store.Audit().ListEvents(t.Context(), storage.EventFilter{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		if e.Seq <= seq {
			continue
		}
		details := map[string]any{}
		for k, v := range e.Details {
			details[k] = v
		}
		m := map[string]any{
			"type": string(e.Type), "outcome": string(e.Outcome), "actor_id": e.ActorID,
			"account_id": e.AccountID, "ip": e.IP, "request_id": e.RequestID, "details": details,
		}
		out = append(out, in.normalize(m).(map[string]any))
	}
	return out
}

// substitute replaces "$name" strings in args by fixture values; "$totp"
// is the current code of the secret a step captured as "$secret".
func (in *instance) substitute(v any) any {
	switch x := v.(type) {
	case string:
		if x == "$totp" {
			secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(in.vars["$secret"])
			if err != nil {
				return "bad-secret"
			}
			return totp.Code(secret, totp.Step(in.clock.Now()))
		}
		if val, ok := in.vars[x]; ok {
			return val
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = in.substitute(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = in.substitute(e)
		}
		return out
	}
	return v
}

// volatile keys hold values that differ between instances (random IDs,
// times, tokens); a value there that is no fixture is shown as "<set>".
var volatile = map[string]bool{
	"id": true, "token": true, "expires_at": true, "created_at": true, "updated_at": true,
	"jti": true, "sub": true, "secret": true, "otpauth_uri": true, "x": true, "kid": true,
	"time": true, "actor_id": true, "account_id": true, "next_cursor": true, "ip": true,
	"request_id": true, "prev_hash": true, "hash": true, "state_since": true, "activates_at": true,
}

// int64Fields are the int64 fields of the responses compared: protojson
// writes them as JSON strings, REST as numbers.
var int64Fields = map[string]bool{"seq": true}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// normalize drops zero values (proto3 omits them, REST may send them),
// names fixture values ("$alice") and masks volatile ones.
func (in *instance) normalize(v any) any {
	names := map[string]string{}
	for k, val := range in.vars {
		names[val] = k
	}
	var walk func(key string, v any) any
	walk = func(key string, v any) any {
		switch x := v.(type) {
		case string:
			if x == "" {
				return nil
			}
			if int64Fields[key] {
				if n, err := strconv.ParseInt(x, 10, 64); err == nil {
					return float64(n)
				}
			}
			if n, ok := names[x]; ok {
				return n
			}
			if volatile[key] {
				return "<set>"
			}
			// IDs inside strings (details such as "jti=..."): mask too.
			return uuidRE.ReplaceAllStringFunc(x, func(id string) string {
				if n, ok := names[id]; ok {
					return n
				}
				return "<uuid>"
			})
		case bool:
			if !x {
				return nil
			}
			return x
		case float64:
			if x == 0 {
				return nil
			}
			return x
		case []any:
			if len(x) == 0 {
				return nil
			}
			out := make([]any, 0, len(x))
			for _, e := range x {
				out = append(out, walk(key, e))
			}
			return out
		case map[string]any:
			out := map[string]any{}
			for k, e := range x {
				if w := walk(k, e); w != nil {
					out[k] = w
				}
			}
			if len(out) == 0 && key != "" {
				return nil
			}
			return out
		}
		return v
	}
	return walk("", v)
}

// result is what one call produced, in transport-neutral form.
type result struct {
	code string         // "" on success, else the contract code
	msg  string         // the error sentence
	body map[string]any // normalised response
	raw  map[string]any // response before normalisation (for captures)
}

// transport is one frontend under test.
type transport interface {
	call(t *testing.T, o op, token string, args map[string]any, requestID string) result
}

// ---- REST ----

type restTransport struct {
	srv *httptest.Server
}

func newREST(t *testing.T, in *instance) transport {
	t.Helper()
	api, err := rest.New(in.svc, rest.Config{
		Logger:  slog.New(slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limiter: frontend.NewLimiter(1, loginBurst),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &restTransport{srv: srv}
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

func (r *restTransport) call(t *testing.T, o op, token string, args map[string]any, requestID string) result {
	t.Helper()
	body := map[string]any{}
	for k, v := range args {
		body[k] = v
	}
	path := pathParam.ReplaceAllStringFunc(o.path, func(m string) string {
		key := m[1 : len(m)-1]
		v, _ := body[key].(string)
		delete(body, key)
		return url.PathEscape(v)
	})
	var rd io.Reader
	if o.query {
		q := url.Values{}
		for k, v := range body {
			q.Set(k, fmt.Sprint(v))
		}
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
	} else if o.method != http.MethodGet && o.method != http.MethodDelete {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), o.method, r.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Request-ID", requestID)
	resp, err := r.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("REST %s %s: body is not a JSON object: %s", o.method, path, raw)
		}
	}
	if m == nil {
		m = map[string]any{}
	}
	if resp.StatusCode >= 300 {
		code, _ := m["code"].(string)
		msg, _ := m["error"].(string)
		if code == "" || msg == "" {
			t.Fatalf("REST %s %s: status %d without a contract error body: %s", o.method, path, resp.StatusCode, raw)
		}
		if want, ok := contractCodes[code]; !ok || want.http != resp.StatusCode {
			t.Errorf("REST %s %s: code %q came with status %d; the contract says %d", o.method, path, code, resp.StatusCode, want.http)
		}
		// Ready's 503 carries the report beside the error.
		if o.rpc == readyRPC && resp.StatusCode == http.StatusServiceUnavailable {
			delete(m, "code")
			delete(m, "error")
			return result{code: code, msg: msg, body: m, raw: m}
		}
		return result{code: code, msg: msg}
	}
	return result{body: m, raw: m}
}

// ---- gRPC ----

type grpcTransport struct {
	conn *grpc.ClientConn
}

func newGRPC(t *testing.T, in *instance) transport {
	t.Helper()
	srv, err := grpcapi.New(in.svc, grpcapi.Config{
		Logger:  slog.New(slog.NewTextHandler(in.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Limiter: frontend.NewLimiter(1, loginBurst),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln := bufconn.Listen(1 << 20)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &grpcTransport{conn: conn}
}

func (g *grpcTransport) call(t *testing.T, o op, token string, args map[string]any, requestID string) result {
	t.Helper()
	in := args
	if o.grpcArgs != nil {
		in = o.grpcArgs(args)
	}
	raw, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	req, resp := o.newReq(), o.newResp()
	if err := protojson.Unmarshal(raw, req); err != nil {
		t.Fatalf("gRPC %s: args %s do not fit %T: %v", o.rpc, raw, req, err)
	}
	md := metadata.Pairs("x-request-id", requestID)
	if token != "" {
		md.Set("authorization", "Bearer "+token)
	}
	ctx := metadata.NewOutgoingContext(t.Context(), md)
	var header metadata.MD
	err = g.conn.Invoke(ctx, o.rpc, req, resp, grpc.Header(&header))
	if got := header.Get("x-request-id"); len(got) != 1 || got[0] != requestID {
		t.Errorf("gRPC %s: x-request-id header %v, want [%s]", o.rpc, got, requestID)
	}
	if err != nil {
		st := status.Convert(err)
		var reason string
		var ready proto.Message
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.ErrorInfo:
				reason = d.Reason
			case proto.Message:
				if proto.MessageName(d) == proto.MessageName(o.newResp()) {
					ready = d
				}
			}
		}
		if reason == "" {
			t.Fatalf("gRPC %s: status %v without an ErrorInfo reason", o.rpc, st)
		}
		if want, ok := contractCodes[reason]; !ok || !slices.Contains(want.grpc, st.Code()) {
			t.Errorf("gRPC %s: reason %q came with code %s; the proto says %v", o.rpc, reason, st.Code(), want.grpc)
		}
		if ready != nil {
			m := protoMap(t, ready)
			return result{code: reason, msg: st.Message(), body: m, raw: m}
		}
		return result{code: reason, msg: st.Message()}
	}
	m := protoMap(t, resp)
	return result{body: m, raw: m}
}

func protoMap(t *testing.T, m proto.Message) map[string]any {
	t.Helper()
	raw, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// contractCodes is, for each contract code, its HTTP status (CONTRACT.md)
// and the gRPC codes proto/mcias/v1 documents for it: written out here,
// not read from the table under test.
var contractCodes = map[string]struct {
	http int
	grpc []codes.Code
}{
	"invalid_request":     {http.StatusBadRequest, []codes.Code{codes.InvalidArgument}},
	"invalid_credentials": {http.StatusUnauthorized, []codes.Code{codes.Unauthenticated}},
	"totp_required":       {http.StatusUnauthorized, []codes.Code{codes.Unauthenticated}},
	"unauthorized":        {http.StatusUnauthorized, []codes.Code{codes.Unauthenticated}},
	"forbidden":           {http.StatusForbidden, []codes.Code{codes.PermissionDenied}},
	"not_found":           {http.StatusNotFound, []codes.Code{codes.NotFound}},
	"conflict":            {http.StatusConflict, []codes.Code{codes.Aborted, codes.FailedPrecondition}},
	"rate_limited":        {http.StatusTooManyRequests, []codes.Code{codes.ResourceExhausted}},
	"unavailable":         {http.StatusServiceUnavailable, []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Canceled}},
	"internal":            {http.StatusInternalServerError, []codes.Code{codes.Internal}},
}
