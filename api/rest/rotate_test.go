package rest_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/metacircular/mcias/api/rest"
)

func jwksKIDs(t *testing.T, e *env) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(e.do("GET", "/.well-known/jwks.json", "", nil).body, &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	return out
}

// TestRotateKeys: a normal rotation publishes a next key in the JWKS
// before it signs; an emergency one replaces the active key at once and
// kills the tokens it signed; only admins may rotate; bad bodies are 400
// and change nothing.
func TestRotateKeys(t *testing.T) {
	e := newEnv(t, rest.Config{})
	admin := e.login(adminUser, adminPass)
	before := jwksKIDs(t, e)
	if len(before) != 1 {
		t.Fatalf("jwks before rotation: %v", before)
	}

	mustStatus(t, "no body", e.do("POST", "/v1/keys/rotate", admin, ""), http.StatusBadRequest, "invalid_request")
	mustStatus(t, "unknown field", e.do("POST", "/v1/keys/rotate", admin, `{"emergncy":true}`), http.StatusBadRequest, "invalid_request")
	mustStatus(t, "wrong type", e.do("POST", "/v1/keys/rotate", admin, `{"emergency":"yes"}`), http.StatusBadRequest, "invalid_request")
	mustStatus(t, "no token", e.do("POST", "/v1/keys/rotate", "", `{}`), http.StatusUnauthorized, "unauthorized")
	if e.do("POST", "/v1/accounts", admin, map[string]string{"username": "dave", "account_type": "human", "password": "dave-long-password"}).status != http.StatusCreated {
		t.Fatal("create dave")
	}
	dave := e.login("dave", "dave-long-password")
	mustStatus(t, "not admin", e.do("POST", "/v1/keys/rotate", dave, `{}`), http.StatusForbidden, "forbidden")
	if got := jwksKIDs(t, e); len(got) != 1 {
		t.Fatalf("refused rotations changed the JWKS: %v", got)
	}

	r := e.do("POST", "/v1/keys/rotate", admin, `{}`)
	mustStatus(t, "rotate", r, http.StatusOK, "")
	body := r.json(t)
	keys, _ := body["keys"].([]any)
	if len(keys) != 2 || body["activates_at"] == nil || body["revoked_tokens"] != float64(0) {
		t.Fatalf("rotate: %s", r.body)
	}
	next := keys[1].(map[string]any)
	if keys[0].(map[string]any)["kid"] != before[0] || next["state"] != "next" {
		t.Fatalf("rotate: %s", r.body)
	}
	if got := jwksKIDs(t, e); len(got) != 2 || got[1] != next["kid"] {
		t.Fatalf("jwks after rotate = %v, want the next key %v published", got, next["kid"])
	}

	r = e.do("POST", "/v1/keys/rotate", admin, `{"emergency":true}`)
	mustStatus(t, "emergency", r, http.StatusOK, "")
	body = r.json(t)
	if n, _ := body["revoked_tokens"].(float64); n < 2 {
		t.Fatalf("emergency revoked %v tokens, want admin's and dave's: %s", body["revoked_tokens"], r.body)
	}
	if got := jwksKIDs(t, e); len(got) != 1 || got[0] != next["kid"] {
		t.Fatalf("jwks after emergency = %v, want only %v", got, next["kid"])
	}
	v := e.do("POST", "/v1/token/validate", "", map[string]string{"token": dave}).json(t)
	if v["valid"] != false {
		t.Fatalf("dave's token after the emergency rotation: %v", v)
	}
	mustStatus(t, "old admin token", e.do("POST", "/v1/keys/rotate", admin, `{}`), http.StatusUnauthorized, "unauthorized")
}
