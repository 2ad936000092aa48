package parity

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// step is one call. as names the token sent: "admin", "alice", a
// captured "$var", "garbage" (a malformed token) or "" (none).
type step struct {
	op      string
	as      string
	args    map[string]any
	code    string            // the contract code wanted; "" for success
	capture map[string]string // response field -> variable, after success
	advance time.Duration     // move the clock first (TOTP steps)
}

// scenario is a sequence of calls on a fresh instance and the audit
// events ("type/outcome", in order) they must store.
type scenario struct {
	name   string
	steps  []step
	events []string
}

type A = map[string]any

func s(op, as string, args A, code string) step {
	return step{op: op, as: as, args: args, code: code}
}

// scenarios is the one table both transports run.
var scenarios = []scenario{
	// AdminService: public.
	{name: "health", steps: []step{s("health", "", nil, "")}},
	{name: "ready", steps: []step{s("ready", "", nil, "")}},
	{name: "public key", steps: []step{s("pubkey", "", nil, "")}},
	{name: "jwks", steps: []step{s("jwks", "", nil, "")}},

	// Login.
	{name: "login", steps: []step{s("login", "", A{"username": "alice", "password": alicePass}, "")},
		events: []string{"login_success/success"}},
	{name: "login canonicalises the username", steps: []step{s("login", "", A{"username": "ALICE", "password": alicePass}, "")},
		events: []string{"login_success/success"}},
	{name: "login wrong password", steps: []step{s("login", "", A{"username": "alice", "password": "wrong password!"}, "invalid_credentials")},
		events: []string{"login_failure/failure"}},
	{name: "login unknown user", steps: []step{s("login", "", A{"username": "nobody", "password": "wrong password!"}, "invalid_credentials")},
		events: []string{"login_failure/failure"}},
	{name: "login without password", steps: []step{s("login", "", A{"username": "alice"}, "invalid_request")}},
	{name: "login rate limited", steps: []step{
		s("login", "", A{"username": "alice", "password": "wrong 1"}, "invalid_credentials"),
		s("login", "", A{"username": "alice", "password": "wrong 2"}, "invalid_credentials"),
		s("login", "", A{"username": "alice", "password": "wrong 3"}, "invalid_credentials"),
		s("login", "", A{"username": "alice", "password": "wrong 4"}, "invalid_credentials"),
		s("login", "", A{"username": "alice", "password": alicePass}, "rate_limited"),
	}, events: []string{"login_failure/failure", "login_failure/failure", "login_failure/failure", "login_failure/failure"}},
	{name: "login of a disabled account", steps: []step{
		s("update", "admin", A{"id": "$alice", "status": "inactive"}, ""),
		s("login", "", A{"username": "alice", "password": alicePass}, "invalid_credentials"),
	}, events: []string{"account_update/success", "login_failure/failure"}},

	// TOTP: enroll, confirm, login needs the code, admin removes it.
	{name: "totp lifecycle", steps: []step{
		{op: "enroll", as: "alice", capture: map[string]string{"secret": "$secret"}},
		s("confirm", "alice", A{"code": "000000x"}, "invalid_request"),
		{op: "confirm", as: "alice", args: A{"code": "$totp"}},
		s("login", "", A{"username": "alice", "password": alicePass}, "totp_required"),
		{op: "login", args: A{"username": "alice", "password": alicePass, "totp_code": "$totp"}, advance: 30 * time.Second},
		s("rmtotp", "alice", A{"account_id": "$alice"}, "forbidden"),
		s("rmtotp", "admin", A{"account_id": "$alice"}, ""),
		s("login", "", A{"username": "alice", "password": alicePass}, ""),
	}, events: []string{
		"totp_enroll/success", "totp_confirm/failure", "totp_confirm/success", "login_failure/failure",
		"totp_use/success", "login_success/success", "totp_remove/success", "login_success/success",
	}},
	{name: "confirm without enrollment", steps: []step{s("confirm", "alice", A{"code": "123456"}, "conflict")}},
	{name: "confirm without code", steps: []step{s("confirm", "alice", A{}, "invalid_request")}},
	{name: "remove totp of unknown account", steps: []step{s("rmtotp", "admin", A{"account_id": "00000000-0000-4000-8000-000000000000"}, "not_found")}},

	// Session.
	{name: "me", steps: []step{s("me", "alice", nil, "")}},
	{name: "me without token", steps: []step{s("me", "", nil, "unauthorized")}},
	{name: "me with a garbage token", steps: []step{s("me", "garbage", nil, "unauthorized")}},
	{name: "logout without token", steps: []step{s("logout", "", nil, "unauthorized")}},
	{name: "renew with a garbage token", steps: []step{s("renew", "garbage", nil, "unauthorized")}},
	{name: "enroll without token", steps: []step{s("enroll", "", nil, "unauthorized")}},
	{name: "logout kills the token", steps: []step{
		s("logout", "alice", nil, ""),
		s("me", "alice", nil, "unauthorized"),
	}, events: []string{"logout/success"}},
	{name: "renew kills the old token", steps: []step{
		{op: "renew", as: "alice", capture: map[string]string{"token": "$new"}},
		s("me", "alice", nil, "unauthorized"),
		s("me", "$new", nil, ""),
	}, events: []string{"token_renew/success"}},
	{name: "change password", steps: []step{
		s("passwd", "alice", A{"current_password": alicePass, "new_password": "a brand new password"}, ""),
		s("login", "", A{"username": "alice", "password": alicePass}, "invalid_credentials"),
		s("login", "", A{"username": "alice", "password": "a brand new password"}, ""),
	}, events: []string{"password_change/success", "login_failure/failure", "login_success/success"}},
	{name: "change password, wrong current", steps: []step{
		s("passwd", "alice", A{"current_password": "not my password", "new_password": "a brand new password"}, "invalid_credentials"),
	}, events: []string{"password_change/failure"}},
	{name: "change password, too short", steps: []step{
		s("passwd", "alice", A{"current_password": alicePass, "new_password": "short"}, "invalid_request"),
	}},
	{name: "change password, missing field", steps: []step{s("passwd", "alice", A{"new_password": "a brand new password"}, "invalid_request")}},

	// Tokens.
	{name: "validate", steps: []step{s("validate", "", A{"token": "$alice.token"}, "")}},
	{name: "validate garbage", steps: []step{s("validate", "", A{"token": "garbage"}, "")}},
	{name: "validate without token", steps: []step{s("validate", "", A{}, "invalid_request")}},
	{name: "issue, validate with audience, revoke", steps: []step{
		{op: "issue", as: "admin", args: A{"account_id": "$svc", "ttl_seconds": 3600, "audience": "ci"}, capture: map[string]string{"token": "$svc.token"}},
		s("validate", "", A{"token": "$svc.token"}, ""),
		s("validate", "", A{"token": "$svc.token", "audience": "ci"}, ""),
		s("revoke", "admin", A{"jti": "$alice.jti"}, ""),
		s("me", "alice", nil, "unauthorized"),
	}, events: []string{"token_issue/success", "token_revoke/success"}},
	{name: "issue for a human", steps: []step{s("issue", "admin", A{"account_id": "$alice"}, "invalid_request")}},
	{name: "issue with bad ttl", steps: []step{s("issue", "admin", A{"account_id": "$svc", "ttl_seconds": -5}, "invalid_request")}},
	{name: "issue with a huge ttl", steps: []step{s("issue", "admin", A{"account_id": "$svc", "ttl_seconds": int64(1) << 62}, "invalid_request")}},
	{name: "issue without account", steps: []step{s("issue", "admin", A{}, "invalid_request")}},
	{name: "issue by a non-admin", steps: []step{s("issue", "alice", A{"account_id": "$svc"}, "forbidden")}},
	{name: "revoke unknown jti", steps: []step{s("revoke", "admin", A{"jti": "00000000-0000-4000-8000-000000000000"}, "not_found")}},
	{name: "revoke by a non-admin", steps: []step{s("revoke", "alice", A{"jti": "$admin.jti"}, "forbidden")}},

	// Accounts.
	{name: "list", steps: []step{s("list", "admin", nil, "")}},
	{name: "list filtered, paged", steps: []step{
		{op: "list", as: "admin", args: A{"type": "human", "limit": 1}, capture: map[string]string{"next_cursor": "$cursor"}},
		s("list", "admin", A{"type": "human", "limit": 1, "cursor": "$cursor"}, ""),
		s("list", "admin", A{"type": "system"}, ""),
	}},
	{name: "list with bad limit", steps: []step{s("list", "admin", A{"limit": 501}, "invalid_request")}},
	{name: "list with bad type", steps: []step{s("list", "admin", A{"type": "robot"}, "invalid_request")}},
	{name: "list by a non-admin", steps: []step{s("list", "alice", nil, "forbidden")}},
	{name: "list without token", steps: []step{s("list", "", nil, "unauthorized")}},
	{name: "create human and system", steps: []step{
		s("create", "admin", A{"username": "Bob", "account_type": "human", "password": "bob's long password"}, ""),
		s("create", "admin", A{"username": "deploy", "account_type": "system"}, ""),
		s("login", "", A{"username": "bob", "password": "bob's long password"}, ""),
	}, events: []string{"account_create/success", "account_create/success", "login_success/success"}},
	{name: "create human without password", steps: []step{s("create", "admin", A{"username": "bob", "account_type": "human"}, "invalid_request")}},
	{name: "create duplicate", steps: []step{s("create", "admin", A{"username": "Alice", "account_type": "human", "password": "another long password"}, "conflict")}},
	{name: "create bad username", steps: []step{s("create", "admin", A{"username": "bad name!", "account_type": "system"}, "invalid_request")}},
	{name: "create by a non-admin", steps: []step{s("create", "alice", A{"username": "eve", "account_type": "system"}, "forbidden")}},
	{name: "get", steps: []step{s("get", "admin", A{"id": "$alice"}, "")}},
	{name: "get unknown", steps: []step{s("get", "admin", A{"id": "00000000-0000-4000-8000-000000000000"}, "not_found")}},
	{name: "get malformed id", steps: []step{s("get", "admin", A{"id": "not-a-uuid"}, "not_found")}},
	{name: "disable kills tokens, enable", steps: []step{
		s("update", "admin", A{"id": "$alice", "status": "inactive"}, ""),
		s("me", "alice", nil, "unauthorized"),
		s("update", "admin", A{"id": "$alice", "status": "active"}, ""),
		s("me", "alice", nil, "unauthorized"),
	}, events: []string{"account_update/success", "account_update/success"}},
	{name: "update to deleted", steps: []step{s("update", "admin", A{"id": "$alice", "status": "deleted"}, "invalid_request")}},
	{name: "delete", steps: []step{
		s("delete", "admin", A{"id": "$alice"}, ""),
		s("me", "alice", nil, "unauthorized"),
		s("get", "admin", A{"id": "$alice"}, ""),
		s("delete", "admin", A{"id": "$alice"}, "not_found"),
	}, events: []string{"account_delete/success"}},
	{name: "delete unknown", steps: []step{s("delete", "admin", A{"id": "00000000-0000-4000-8000-000000000000"}, "not_found")}},
	{name: "set password", steps: []step{
		s("setpw", "admin", A{"id": "$alice", "password": "set by the admin"}, ""),
		s("me", "alice", nil, "unauthorized"),
		s("login", "", A{"username": "alice", "password": "set by the admin"}, ""),
	}, events: []string{"password_change/success", "login_success/success"}},
	{name: "set password empty", steps: []step{s("setpw", "admin", A{"id": "$alice"}, "invalid_request")}},
	{name: "set password with a control character", steps: []step{s("setpw", "admin", A{"id": "$alice", "password": "long enough\x00password"}, "invalid_request")}},
	{name: "set password too short", steps: []step{s("setpw", "admin", A{"id": "$alice", "password": "short"}, "invalid_request")}},
	{name: "roles", steps: []step{
		s("getroles", "admin", A{"id": "$alice"}, ""),
		s("setroles", "admin", A{"id": "$alice", "roles": []any{"ops", "admin"}}, ""),
		s("getroles", "admin", A{"id": "$alice"}, ""),
		s("setroles", "admin", A{"id": "$alice", "roles": []any{}}, ""),
	}, events: []string{"role_change/success", "role_change/success"}},
	{name: "roles invalid", steps: []step{s("setroles", "admin", A{"id": "$alice", "roles": []any{"not a role!"}}, "invalid_request")}},
	{name: "roles of unknown account", steps: []step{s("getroles", "admin", A{"id": "00000000-0000-4000-8000-000000000000"}, "not_found")}},

	// Credentials.
	{name: "pgcreds", steps: []step{
		s("getpg", "admin", A{"account_id": "$svc"}, "not_found"),
		s("setpg", "admin", A{"account_id": "$svc", "host": "db.internal", "port": 5432, "database": "app", "username": "app", "password": "pg secret"}, ""),
		s("getpg", "admin", A{"account_id": "$svc"}, ""),
	}, events: []string{"pgcreds_write/success", "pgcreds_read/success"}},
	{name: "pgcreds bad port", steps: []step{
		s("setpg", "admin", A{"account_id": "$svc", "host": "db", "port": 70000, "database": "app", "username": "app", "password": "pg secret"}, "invalid_request"),
	}},
	{name: "pgcreds by a non-admin", steps: []step{s("getpg", "alice", A{"account_id": "$svc"}, "forbidden")}},

	// Audit.
	{name: "audit", steps: []step{
		s("login", "", A{"username": "alice", "password": "wrong password!"}, "invalid_credentials"),
		s("audit", "admin", A{"type": "login_failure"}, ""),
		s("audit", "admin", A{"account_id": "$alice", "limit": 2}, ""),
	}, events: []string{"login_failure/failure"}},
	{name: "audit bad since", steps: []step{s("audit", "admin", A{"since": "yesterday"}, "invalid_request")}},
	{name: "audit bad limit", steps: []step{s("audit", "admin", A{"limit": 1000}, "invalid_request")}},
	{name: "audit by a non-admin", steps: []step{s("audit", "alice", nil, "forbidden")}},

	// The audit chain, for verification.
	{name: "audit chain", steps: []step{
		s("login", "", A{"username": "alice", "password": "wrong password!"}, "invalid_credentials"),
		s("chain", "admin", nil, ""),
		s("chain", "admin", A{"after_seq": 2, "limit": 2}, ""),
		s("chain", "admin", A{"after_seq": 1000000}, ""),
	}, events: []string{"login_failure/failure"}},
	{name: "audit chain bad after_seq", steps: []step{s("chain", "admin", A{"after_seq": -1}, "invalid_request")}},
	{name: "audit chain bad limit", steps: []step{s("chain", "admin", A{"limit": 501}, "invalid_request")}},
	{name: "audit chain by a non-admin", steps: []step{s("chain", "alice", nil, "forbidden")}},

	// Signing keys.
	{name: "keys", steps: []step{s("keys", "admin", nil, "")}},
	{name: "keys by a non-admin", steps: []step{s("keys", "alice", nil, "forbidden")}},
	{name: "keys without a token", steps: []step{s("keys", "", nil, "unauthorized")}},
	{name: "rotate", steps: []step{
		s("rotate", "admin", A{}, ""),
		s("rotate", "admin", A{"emergency": false}, ""),
		s("keys", "admin", nil, ""),
	}, events: []string{"key_rotation/success"}},
	{name: "rotate emergency", steps: []step{
		s("rotate", "admin", A{"emergency": true}, ""),
		s("keys", "admin", nil, "unauthorized"),
	}, events: []string{"key_rotation/success", "token_revoke/success", "token_revoke/success", "key_rotation/success"}},
	{name: "rotate by a non-admin", steps: []step{s("rotate", "alice", A{}, "forbidden")}},
}

// run is what one transport did in one scenario.
type run struct {
	steps  []result
	events []map[string]any
}

func runScenario(t *testing.T, sc scenario, newTransport func(*testing.T, *instance) transport) run {
	t.Helper()
	in := newInstance(t)
	tr := newTransport(t, in)
	mark := in.lastSeq(t)
	var out run
	for i, st := range sc.steps {
		o, ok := ops[st.op]
		if !ok {
			t.Fatalf("step %d: unknown op %q", i, st.op)
		}
		in.clock.advance(st.advance)
		var token string
		switch st.as {
		case "":
		case "garbage":
			token = "not.a.token"
		case "admin", "alice":
			token = in.vars["$"+st.as+".token"]
		default:
			token = in.vars[st.as]
		}
		args, _ := in.substitute(map[string]any(st.args)).(map[string]any)
		if args == nil {
			args = map[string]any{}
		}
		res := tr.call(t, o, token, args, fmt.Sprintf("parity-%d", i))
		if res.code != st.code {
			t.Errorf("step %d (%s as %q): code %q (%s), want %q", i, st.op, st.as, res.code, res.msg, orOK(st.code))
		}
		for field, name := range st.capture {
			v, _ := res.raw[field].(string)
			if v == "" {
				t.Fatalf("step %d (%s): no %s to capture in %v", i, st.op, field, res.raw)
			}
			in.vars[name] = v
		}
		res.body, _ = in.normalize(res.body).(map[string]any)
		out.steps = append(out.steps, res)
	}
	// No secret the scenario handled may reach the log.
	logs := in.logs.String()
	if !strings.Contains(logs, "parity-0") {
		t.Errorf("the access log does not show the request ID: %q", logs)
	}
	secrets := []string{adminPass, alicePass, in.vars["$admin.token"], in.vars["$alice.token"], in.vars["$new"], in.vars["$svc.token"], in.vars["$secret"]}
	for _, st := range sc.steps {
		for _, k := range []string{"password", "current_password", "new_password", "totp_code", "token"} {
			if v, ok := st.args[k].(string); ok && !strings.HasPrefix(v, "$") {
				secrets = append(secrets, v)
			}
		}
	}
	for _, sec := range secrets {
		if len(sec) > 6 && strings.Contains(logs, sec) {
			t.Errorf("a secret reached the log: %q", sec)
		}
	}
	out.events = in.eventsAfter(t, mark)
	var got []string
	for _, e := range out.events {
		got = append(got, fmt.Sprintf("%v/%v", e["type"], e["outcome"]))
	}
	if !reflect.DeepEqual(got, sc.events) {
		t.Errorf("audit events:\n got %v\nwant %v", got, sc.events)
	}
	return out
}

func orOK(code string) string {
	if code == "" {
		return "success"
	}
	return code
}

func TestParity(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios {
		t.Run("case="+sc.name, func(t *testing.T) {
			t.Parallel()
			var restRun, grpcRun run
			t.Run("transport=rest", func(t *testing.T) { restRun = runScenario(t, sc, newREST) })
			t.Run("transport=grpc", func(t *testing.T) { grpcRun = runScenario(t, sc, newGRPC) })
			if t.Failed() || len(restRun.steps) != len(sc.steps) || len(grpcRun.steps) != len(sc.steps) {
				return // a transport failed, or was filtered out (-run)
			}
			for i := range sc.steps {
				r, g := restRun.steps[i], grpcRun.steps[i]
				if r.code != g.code || r.msg != g.msg {
					t.Errorf("step %d (%s): REST %q %q, gRPC %q %q", i, sc.steps[i].op, r.code, r.msg, g.code, g.msg)
				}
				if !reflect.DeepEqual(r.body, g.body) {
					t.Errorf("step %d (%s): results differ\n REST %v\n gRPC %v", i, sc.steps[i].op, r.body, g.body)
				}
			}
			if !reflect.DeepEqual(restRun.events, grpcRun.events) {
				t.Errorf("audit events differ\n REST %v\n gRPC %v", restRun.events, grpcRun.events)
			}
		})
	}
}

// TestEveryOperationHasScenarios keeps the table complete: every
// operation has a success and a failure case.
func TestEveryOperationHasScenarios(t *testing.T) {
	ok, failed := map[string]bool{}, map[string]bool{}
	for _, sc := range scenarios {
		for _, st := range sc.steps {
			if st.code == "" {
				ok[st.op] = true
			} else {
				failed[st.op] = true
			}
		}
	}
	// The public state reads have no failure a client can cause; their
	// failure (a backend down) is TestParityBackendDown's.
	noClientFailure := map[string]bool{"health": true, "ready": true, "pubkey": true, "jwks": true}
	var missing []string
	for name := range ops {
		if !ok[name] {
			missing = append(missing, name+" (success)")
		}
		if !failed[name] && !noClientFailure[name] {
			missing = append(missing, name+" (failure)")
		}
	}
	if len(missing) > 0 {
		t.Errorf("operations without scenarios: %s", strings.Join(missing, ", "))
	}
}

// TestParityBackendDown: with storage gone, Ready fails alike on both
// transports (REST 503, gRPC UNAVAILABLE, each with the report naming the
// backend), and gRPC health turns NOT_SERVING.
func TestParityBackendDown(t *testing.T) {
	t.Parallel()
	bodies := map[string]map[string]any{}
	msgs := map[string]string{}
	for name, newTransport := range map[string]func(*testing.T, *instance) transport{"rest": newREST, "grpc": newGRPC} {
		t.Run("transport="+name, func(t *testing.T) {
			in := newInstance(t)
			tr := newTransport(t, in)
			if err := in.store.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			res := tr.call(t, ops["ready"], "", map[string]any{}, "parity-down")
			if res.code != "unavailable" {
				t.Fatalf("ready with storage closed: code %q, want unavailable", res.code)
			}
			storage, _ := res.body["backends"].(map[string]any)["storage"].(map[string]any)
			if storage["status"] != "down" || storage["error"] == "" {
				t.Errorf("ready report does not name storage as down: %v", res.body)
			}
			bodies[name], _ = in.normalize(res.body).(map[string]any)
			msgs[name] = res.msg
			if g, ok := tr.(*grpcTransport); ok {
				resp, err := healthpb.NewHealthClient(g.conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
					t.Errorf("health with storage closed: %s, want NOT_SERVING", resp.Status)
				}
			}
		})
	}
	if len(bodies) < 2 {
		return // a transport was filtered out (-run) or failed above
	}
	if !reflect.DeepEqual(bodies["rest"], bodies["grpc"]) {
		t.Errorf("ready reports differ\n REST %v\n gRPC %v", bodies["rest"], bodies["grpc"])
	}
	if msgs["rest"] != msgs["grpc"] || !strings.Contains(msgs["rest"], "storage") {
		t.Errorf("not-ready sentences: REST %q, gRPC %q (want equal, naming storage)", msgs["rest"], msgs["grpc"])
	}
}

// TestHealthServing: a healthy server reports SERVING for the whole
// server and for each MCIAS service.
func TestHealthServing(t *testing.T) {
	t.Parallel()
	in := newInstance(t)
	g := newGRPC(t, in).(*grpcTransport)
	for _, svc := range []string{"", "mcias.v1.AuthService", "mcias.v1.TokenService"} {
		resp, err := healthpb.NewHealthClient(g.conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %s, want SERVING", svc, resp.Status)
		}
	}
}
