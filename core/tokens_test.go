package core_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/metacircular/mcias/core"
	"github.com/metacircular/mcias/sdk"
	"github.com/metacircular/mcias/sdk/storage"
)

func TestTokenShape(t *testing.T) {
	e := newEnv(t)
	tok := e.login(adminName, adminPW)
	h, c := tokenParts(t, tok)
	key, err := e.svc.ActiveKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if h["alg"] != "EdDSA" || h["typ"] != "JWT" || h["kid"] != key.KID {
		t.Fatalf("header = %v", h)
	}
	for _, k := range []string{"iss", "sub", "iat", "nbf", "exp", "jti", "roles"} {
		if _, ok := c[k]; !ok {
			t.Fatalf("claim %s missing: %v", k, c)
		}
	}
	if _, ok := c["aud"]; ok {
		t.Fatal("session token carries aud")
	}
	if c["iss"] != issuer || c["iat"] != c["nbf"] {
		t.Fatalf("claims = %v", c)
	}
	// An independent verifier with only the published key accepts it.
	keys, err := e.svc.PublicKeys(t.Context())
	if err != nil || len(keys) == 0 || keys[0].State != "active" {
		t.Fatalf("public keys = %v, %v", keys, err)
	}
	_, err = jwt.Parse(tok, func(*jwt.Token) (any, error) { return keys[0].Key, nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(e.clk.Now))
	if err != nil {
		t.Fatalf("independent verify: %v", err)
	}
}

func TestTokenAttacks(t *testing.T) {
	e := newEnv(t)
	tok := e.login(adminName, adminPW)
	h, c := tokenParts(t, tok)
	parts := strings.Split(tok, ".")
	key, err := e.svc.ActiveKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	now := e.clk.Now().Unix()

	with := func(m map[string]any, k string, v any) map[string]any {
		m = cloneMap(m)
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	hmacWith := func(secret []byte) string {
		ht := cloneMap(h)
		ht["alg"] = "HS256"
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(c)).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		// Keep the server's kid so only the alg is wrong.
		p := strings.Split(s, ".")
		hs := encodeJSON(t, ht)
		mac, _ := jwt.SigningMethodHS256.Sign(hs+"."+p[1], secret)
		return hs + "." + p[1] + "." + (&jwt.Token{}).EncodeSegment(mac)
	}
	otherKey := func() string {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		ht := with(h, "kid", "not-a-published-kid")
		signing := encodeJSON(t, ht) + "." + encodeJSON(t, c)
		return signing + "." + (&jwt.Token{}).EncodeSegment(ed25519.Sign(priv, []byte(signing)))
	}
	sameKIDOtherKey := func() string {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		signing := parts[0] + "." + parts[1]
		return signing + "." + (&jwt.Token{}).EncodeSegment(ed25519.Sign(priv, []byte(signing)))
	}
	flipped := func() string {
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[0] ^= 1
		return parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	// The claims part of another valid token spliced onto this signature.
	spliced := func() string {
		other := e.login(adminName, adminPW)
		return parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2]
	}

	tests := []struct {
		name  string
		token string
		aud   string
		want  bool
	}{
		{"control: the token itself", tok, "", true},
		{"control: re-signed unchanged", e.resign(h, c), "", true},
		{"alg none", encodeJSON(t, with(h, "alg", "none")) + "." + parts[1] + ".", "", false},
		{"alg none with signature", encodeJSON(t, with(h, "alg", "none")) + "." + parts[1] + "." + parts[2], "", false},
		{"HS256 keyed with the public key", hmacWith(key.Key), "", false},
		{"HS256 keyed with the public key as base64url", hmacWith([]byte(base64.RawURLEncoding.EncodeToString(key.Key))), "", false},
		{"EdDSA header, other key, unknown kid", otherKey(), "", false},
		{"server kid, other key", sameKIDOtherKey(), "", false},
		{"flipped signature bit", flipped(), "", false},
		{"claims spliced from another token", spliced(), "", false},
		{"no kid", e.resign(with(h, "kid", nil), c), "", false},
		{"jwk in header", e.resign(with(h, "jwk", map[string]any{"kty": "OKP"}), c), "", true},
		{"crit header", e.resign(with(h, "crit", []string{"exp"}), c), "", false},
		{"typ not JWT", e.resign(with(h, "typ", "at+jwt"), c), "", false},
		{"expired", e.resign(h, with(c, "exp", now-60)), "", false},
		{"expired within leeway", e.resign(h, with(c, "exp", now-10)), "", true},
		{"nbf in the future", e.resign(h, with(c, "nbf", now+120)), "", false},
		{"nbf within leeway", e.resign(h, with(c, "nbf", now+10)), "", true},
		{"iat in the future", e.resign(h, with(c, "iat", now+120)), "", false},
		{"missing exp", e.resign(h, with(c, "exp", nil)), "", false},
		{"missing nbf", e.resign(h, with(c, "nbf", nil)), "", false},
		{"missing iat", e.resign(h, with(c, "iat", nil)), "", false},
		{"exp not a number", e.resign(h, with(c, "exp", "tomorrow")), "", false},
		{"wrong iss", e.resign(h, with(c, "iss", "https://evil.test")), "", false},
		{"missing iss", e.resign(h, with(c, "iss", nil)), "", false},
		{"unknown jti", e.resign(h, with(c, "jti", "8b7f2d4e-1111-4222-8333-444455556666")), "", false},
		{"missing jti", e.resign(h, with(c, "jti", nil)), "", false},
		{"sub of another account", e.resign(h, with(c, "sub", "8b7f2d4e-1111-4222-8333-444455556666")), "", false},
		{"aud added, none asked", e.resign(h, with(c, "aud", "svc")), "", false},
		{"aud asked, none in token", tok, "svc", false},
		{"garbage", "not.a.token", "", false},
		{"empty", "", "", false},
		{"four parts", tok + ".x", "", false},
	}
	for _, tc := range tests {
		t.Run("case="+tc.name, func(t *testing.T) {
			if got := e.valid(tc.token, tc.aud); got != tc.want {
				t.Fatalf("valid = %v, want %v", got, tc.want)
			}
			if tc.aud == "" {
				_, err := e.svc.Authenticate(t.Context(), tc.token)
				if tc.want != (err == nil) {
					t.Fatalf("authenticate err = %v, want valid=%v", err, tc.want)
				}
				if err != nil && !errors.Is(err, core.ErrUnauthorized) {
					t.Fatalf("authenticate err = %v, want unauthorized", err)
				}
			}
		})
	}

	t.Run("case=expired by the clock", func(t *testing.T) {
		e.clk.Advance(time.Hour + 31*time.Second)
		if e.valid(tok, "") {
			t.Fatal("token valid past exp + leeway")
		}
	})
}

func TestTokensDie(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	inactive, active := storage.Inactive, storage.Active
	tests := []struct {
		name string
		kill func(t *testing.T, id string)
	}{
		{"admin sets password", func(t *testing.T, id string) {
			if err := e.svc.SetPassword(ctx, e.admin, id, "brand new password"); err != nil {
				t.Fatal(err)
			}
		}},
		{"disabled", func(t *testing.T, id string) {
			if _, err := e.svc.UpdateAccount(ctx, e.admin, id, core.AccountUpdate{Status: &inactive}); err != nil {
				t.Fatal(err)
			}
		}},
		{"disabled then re-enabled", func(t *testing.T, id string) {
			if _, err := e.svc.UpdateAccount(ctx, e.admin, id, core.AccountUpdate{Status: &inactive}); err != nil {
				t.Fatal(err)
			}
			a, err := e.svc.UpdateAccount(ctx, e.admin, id, core.AccountUpdate{Status: &active})
			if err != nil || a.Status != storage.Active {
				t.Fatalf("re-enable: %+v %v", a, err)
			}
		}},
		{"deleted", func(t *testing.T, id string) {
			if err := e.svc.DeleteAccount(ctx, e.admin, id); err != nil {
				t.Fatal(err)
			}
		}},
		{"token revoked by admin", nil},
	}
	for i, tc := range tests {
		t.Run("case="+tc.name, func(t *testing.T) {
			name := "user" + string(rune('a'+i))
			a := e.user(name, "user password 12")
			tok := e.login(name, "user password 12")
			if !e.valid(tok, "") {
				t.Fatal("fresh token invalid")
			}
			if tc.kill == nil {
				p := e.caller(tok)
				if err := e.svc.RevokeToken(ctx, e.admin, p.Principal.JTI); err != nil {
					t.Fatal(err)
				}
			} else {
				tc.kill(t, a.ID)
			}
			if e.valid(tok, "") {
				t.Fatal("token still valid")
			}
			// And for good: a restarted service agrees.
			fresh := e.open()
			if v, err := fresh.Validate(ctx, tok, ""); err != nil || v.Valid {
				t.Fatalf("after restart: valid=%v err=%v", v.Valid, err)
			}
		})
	}
	if err := e.svc.RevokeToken(ctx, e.admin, "8b7f2d4e-1111-4222-8333-444455556666"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("revoke unknown jti: %v", err)
	}
}

func TestServiceTokens(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sys := e.user("build-bot", "", "deployer")
	human := e.user("alice", "alice password 1")
	idle := e.user("idle-bot", "")
	inactive := storage.Inactive
	if _, err := e.svc.UpdateAccount(ctx, e.admin, idle.ID, core.AccountUpdate{Status: &inactive}); err != nil {
		t.Fatal(err)
	}
	maxTTL := 90 * 24 * time.Hour

	tests := []struct {
		name    string
		id      string
		ttl     time.Duration
		aud     string
		wantErr error
		wantTTL time.Duration
	}{
		{"default ttl", sys.ID, 0, "", nil, 24 * time.Hour},
		{"one second", sys.ID, time.Second, "", nil, time.Second},
		{"max", sys.ID, maxTTL, "", nil, maxTTL},
		{"with audience", sys.ID, time.Hour, "billing", nil, time.Hour},
		{"max plus one second", sys.ID, maxTTL + time.Second, "", sdk.ErrInvalidArgument, 0},
		{"huge", sys.ID, time.Duration(math.MaxInt64), "", sdk.ErrInvalidArgument, 0},
		{"negative", sys.ID, -time.Second, "", sdk.ErrInvalidArgument, 0},
		{"min int", sys.ID, time.Duration(math.MinInt64), "", sdk.ErrInvalidArgument, 0},
		{"sub-second", sys.ID, time.Millisecond, "", sdk.ErrInvalidArgument, 0},
		{"audience with space", sys.ID, 0, "a b", sdk.ErrInvalidArgument, 0},
		{"human account", human.ID, 0, "", sdk.ErrInvalidArgument, 0},
		{"inactive system account", idle.ID, 0, "", sdk.ErrInvalidArgument, 0},
		{"unknown account", "8b7f2d4e-1111-4222-8333-444455556666", 0, "", sdk.ErrNotFound, 0},
		{"malformed id", "../../etc", 0, "", sdk.ErrNotFound, 0},
	}
	for _, tc := range tests {
		t.Run("case="+tc.name, func(t *testing.T) {
			it, err := e.svc.IssueServiceToken(ctx, e.admin, tc.id, tc.ttl, tc.aud)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got := it.ExpiresAt.Sub(e.clk.Now()); got != tc.wantTTL {
				t.Fatalf("ttl = %s, want %s", got, tc.wantTTL)
			}
			v, err := e.svc.Validate(ctx, it.Token, tc.aud)
			if err != nil || !v.Valid || v.Sub != sys.ID || v.Username != "build-bot" ||
				v.AccountType != storage.System || len(v.Roles) != 1 || v.Roles[0] != "deployer" {
				t.Fatalf("validation = %+v, %v", v, err)
			}
		})
	}

	t.Run("case=audience rules", func(t *testing.T) {
		it, err := e.svc.IssueServiceToken(ctx, e.admin, sys.ID, 0, "billing")
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			aud  string
			want bool
		}{{"billing", true}, {"", false}, {"other", false}, {"Billing", false}} {
			if got := e.valid(it.Token, tc.aud); got != tc.want {
				t.Fatalf("aud %q: valid = %v, want %v", tc.aud, got, tc.want)
			}
		}
		if _, err := e.svc.Authenticate(ctx, it.Token); !errors.Is(err, core.ErrUnauthorized) {
			t.Fatalf("a token with aud authenticated against MCIAS: %v", err)
		}
		plain, err := e.svc.IssueServiceToken(ctx, e.admin, sys.ID, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if e.valid(plain.Token, "billing") {
			t.Fatal("token without aud valid for an audience")
		}
		p, err := e.svc.Authenticate(ctx, plain.Token)
		if err != nil || p.AccountType != storage.System {
			t.Fatalf("service token without aud as bearer: %+v %v", p, err)
		}
	})
}
