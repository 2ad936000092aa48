package totp

import (
	"bytes"
	"encoding/base32"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfcSecret is the SHA1 seed of RFC 6238 appendix B.
var rfcSecret = []byte("12345678901234567890")

func TestRFC6238Vectors(t *testing.T) {
	tests := []struct {
		unix int64
		want string // 8 digits, as printed in the RFC
	}{
		{59, "94287082"},
		{1111111109, "07081804"},
		{1111111111, "14050471"},
		{1234567890, "89005924"},
		{2000000000, "69279037"},
		{20000000000, "65353130"},
	}
	for _, tt := range tests {
		t.Run("case=t="+strconv.FormatInt(tt.unix, 10), func(t *testing.T) {
			step := Step(time.Unix(tt.unix, 0))
			if got := code(rfcSecret, step, 8); got != tt.want {
				t.Fatalf("8-digit code = %s, want %s", got, tt.want)
			}
			// A 6-digit code is the same value mod 10^6.
			if got := Code(rfcSecret, step); got != tt.want[2:] {
				t.Fatalf("Code = %s, want %s", got, tt.want[2:])
			}
		})
	}
}

func TestStep(t *testing.T) {
	tests := []struct {
		unix int64
		want int64
	}{{0, 0}, {29, 0}, {30, 1}, {59, 1}, {60, 2}, {-1, -1}}
	for _, tt := range tests {
		if got := Step(time.Unix(tt.unix, 0)); got != tt.want {
			t.Errorf("Step(%d) = %d, want %d", tt.unix, got, tt.want)
		}
	}
}

func TestGenerateEncodeSecret(t *testing.T) {
	a, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 20 || bytes.Equal(a, b) {
		t.Fatalf("secrets: len %d, equal %v", len(a), bytes.Equal(a, b))
	}
	enc := EncodeSecret(a)
	if strings.Contains(enc, "=") || len(enc) != 32 {
		t.Fatalf("EncodeSecret = %q", enc)
	}
	dec, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(enc)
	if err != nil || !bytes.Equal(dec, a) {
		t.Fatalf("round trip: %v", err)
	}
	if got := EncodeSecret(rfcSecret); got != "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" {
		t.Fatalf("EncodeSecret(rfc) = %s", got)
	}
}

func TestVerify(t *testing.T) {
	now := time.Unix(1111111111, 0) // step 37037037
	cur := Step(now)
	at := func(s int64) string { return Code(rfcSecret, s) }
	tests := []struct {
		name     string
		code     string
		lastStep int64
		wantStep int64
		wantOK   bool
	}{
		{"current", at(cur), 0, cur, true},
		{"previous", at(cur - 1), 0, cur - 1, true},
		{"next", at(cur + 1), 0, cur + 1, true},
		{"too old", at(cur - 2), 0, 0, false},
		{"too new", at(cur + 2), 0, 0, false},
		{"replay current", at(cur), cur, 0, false},
		{"after later use", at(cur - 1), cur, 0, false},
		{"newer than last", at(cur + 1), cur, cur + 1, true},
		{"five digits", at(cur)[:5], 0, 0, false},
		{"seven digits", at(cur) + "0", 0, 0, false},
		{"spaces", " " + at(cur)[1:], 0, 0, false},
		{"fullwidth digits", "１２３４５６", 0, 0, false},
		{"sign", "+" + at(cur)[1:], 0, 0, false},
		{"empty", "", 0, 0, false},
		{"wrong", wrongCode(at(cur-1), at(cur), at(cur+1)), 0, 0, false},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			step, ok := Verify(rfcSecret, tt.code, now, tt.lastStep)
			if ok != tt.wantOK || step != tt.wantStep {
				t.Fatalf("Verify = %d, %v; want %d, %v", step, ok, tt.wantStep, tt.wantOK)
			}
		})
	}
}

func wrongCode(avoid ...string) string {
	for i := 0; ; i++ {
		c := strconv.Itoa(100000 + i)
		ok := true
		for _, a := range avoid {
			if a == c {
				ok = false
			}
		}
		if ok {
			return c
		}
	}
}

// TestCrossCheckOathtool compares Code with oath-toolkit's oathtool. A
// missing oathtool is a failure: `make test` installs it (apt-get install
// oathtool).
func TestCrossCheckOathtool(t *testing.T) {
	bin, err := exec.LookPath("oathtool")
	if err != nil {
		t.Fatal("oathtool not found; install it with `apt-get install -y oathtool` (make test does)")
	}
	secret, err := GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	for _, unix := range []int64{0, 59, 1111111109, 1700000000, time.Now().Unix()} {
		t.Run("case=t="+strconv.FormatInt(unix, 10), func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), bin, "--totp", "-b", EncodeSecret(secret),
				"-N", "@"+strconv.FormatInt(unix, 10)).Output()
			if err != nil {
				t.Fatalf("oathtool: %v", err)
			}
			want := strings.TrimSpace(string(out))
			if got := Code(secret, Step(time.Unix(unix, 0))); got != want {
				t.Fatalf("Code = %s, oathtool = %s", got, want)
			}
		})
	}
}

func TestURI(t *testing.T) {
	secret := rfcSecret
	got := URI("MCIAS", "alice", secret)
	want := "otpauth://totp/MCIAS:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=MCIAS&algorithm=SHA1&digits=6&period=30"
	if got != want {
		t.Fatalf("URI =\n %s\nwant\n %s", got, want)
	}
	odd := URI("My Co: Ops", "a b/c?d", secret)
	u, err := url.Parse(odd)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" {
		t.Fatalf("scheme/host: %s", odd)
	}
	label := strings.TrimPrefix(u.EscapedPath(), "/")
	iss, name, ok := strings.Cut(label, ":")
	if !ok || strings.Contains(name, ":") {
		t.Fatalf("label %q does not split into issuer:name", label)
	}
	if ui, _ := url.PathUnescape(iss); ui != "My Co: Ops" {
		t.Fatalf("issuer = %q", ui)
	}
	if un, _ := url.PathUnescape(name); un != "a b/c?d" {
		t.Fatalf("name = %q", un)
	}
	if q := u.Query(); q.Get("issuer") != "My Co: Ops" || q.Get("secret") != EncodeSecret(secret) {
		t.Fatalf("query = %v", q)
	}
	if strings.Contains(odd, "+") {
		t.Fatalf("spaces encoded as '+': %s", odd)
	}
}
