package password

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/metacircular/mcias/sdk"
)

// testParams are the cheapest parameters Validate accepts, to keep tests fast.
var testParams = Params{Time: 5, MemoryKiB: 7168, Threads: 1}

func TestDefaultParamsValid(t *testing.T) {
	p := DefaultParams()
	if p != (Params{Time: 3, MemoryKiB: 65536, Threads: 1}) {
		t.Fatalf("DefaultParams = %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"row1", Params{1, 47104, 1}, true},
		{"row2", Params{2, 19456, 1}, true},
		{"row3", Params{3, 12288, 1}, true},
		{"row4", Params{4, 9216, 1}, true},
		{"row5", Params{5, 7168, 1}, true},
		{"more time than row5", Params{10, 7168, 4}, true},
		{"row1 short memory", Params{1, 47103, 1}, false},
		{"row2 short memory", Params{2, 19455, 1}, false},
		{"row5 short memory", Params{5, 7167, 1}, false},
		{"zero time", Params{0, 1 << 20, 1}, false},
		{"zero threads", Params{3, 65536, 0}, false},
		{"over cap", Params{3, MaxMemoryKiB + 1, 1}, false},
		{"at cap", Params{1, MaxMemoryKiB, 1}, true},
		{"zero", Params{}, false},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.ok && err != nil {
				t.Fatalf("Validate(%+v) = %v, want nil", tt.p, err)
			}
			if !tt.ok {
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Fatalf("Validate(%+v) = %v, want ErrInvalidArgument", tt.p, err)
				}
			}
		})
	}
	err := Params{Time: 1, MemoryKiB: 1024, Threads: 1}.Validate()
	if err == nil || !strings.Contains(err.Error(), "m>=47104 KiB with t>=1") || !strings.Contains(err.Error(), "m>=7168 KiB with t>=5") {
		t.Fatalf("error should list the minimums table, got %v", err)
	}
}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse", testParams)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=7168,t=5,p=1$") {
		t.Fatalf("unexpected PHC prefix: %s", h)
	}
	h2, err := Hash("correct horse", testParams)
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	tests := []struct {
		name, pw string
		want     bool
	}{
		{"right", "correct horse", true},
		{"wrong", "correct horse!", false},
		{"empty", "", false},
		{"case", "Correct horse", false},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			ok, err := Verify(tt.pw, h)
			if err != nil || ok != tt.want {
				t.Fatalf("Verify = %v, %v; want %v", ok, err, tt.want)
			}
		})
	}
}

func TestHashRejectsWeakParams(t *testing.T) {
	if _, err := Hash("pw", Params{Time: 1, MemoryKiB: 1024, Threads: 1}); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Fatalf("Hash with weak params: %v, want ErrInvalidArgument", err)
	}
}

func TestVerifyMalformed(t *testing.T) {
	good, err := Hash("pw", testParams)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	tests := []struct{ name, phc string }{
		{"empty", ""},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"},
		{"argon2i", strings.Replace(good, "argon2id", "argon2i", 1)},
		{"old version", strings.Replace(good, "v=19", "v=16", 1)},
		{"missing param", "$argon2id$v=19$m=7168,t=5$" + parts[4] + "$" + parts[5]},
		{"extra param", "$argon2id$v=19$m=7168,t=5,p=1,x=1$" + parts[4] + "$" + parts[5]},
		{"bad number", "$argon2id$v=19$m=7168,t=five,p=1$" + parts[4] + "$" + parts[5]},
		{"zero time", "$argon2id$v=19$m=7168,t=0,p=1$" + parts[4] + "$" + parts[5]},
		{"huge memory", "$argon2id$v=19$m=4294967295,t=1,p=1$" + parts[4] + "$" + parts[5]},
		{"bad salt", "$argon2id$v=19$m=7168,t=5,p=1$!!!$" + parts[5]},
		{"short hash", "$argon2id$v=19$m=7168,t=5,p=1$" + parts[4] + "$AAAA"},
		{"padded b64", good + "="},
		{"trailing field", good + "$x"},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			ok, err := Verify("pw", tt.phc)
			if ok || !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Verify = %v, %v; want false, ErrInvalidArgument", ok, err)
			}
			if tt.phc != "" && strings.Contains(err.Error(), tt.phc) {
				t.Fatal("error echoes the stored hash")
			}
		})
	}
}

func TestNeedsRehash(t *testing.T) {
	h, err := Hash("pw", testParams)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		phc  string
		p    Params
		want bool
	}{
		{"same", h, testParams, false},
		{"more time", h, Params{Time: 6, MemoryKiB: 7168, Threads: 1}, true},
		{"more memory", h, Params{Time: 5, MemoryKiB: 8192, Threads: 1}, true},
		{"more threads", h, Params{Time: 5, MemoryKiB: 7168, Threads: 2}, true},
		{"malformed", "garbage", testParams, true},
		{"short salt", encode(testParams, make([]byte, 8), make([]byte, KeyLen)), testParams, true},
		{"long key", encode(testParams, make([]byte, SaltLen), make([]byte, 64)), testParams, true},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			if got := NeedsRehash(tt.phc, tt.p); got != tt.want {
				t.Fatalf("NeedsRehash = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCrossCheckArgon2CLI checks our encoding and derivation against the
// reference implementation shipped as Debian's argon2 CLI. A missing CLI
// is a failure: `make test` installs it (apt-get install argon2).
func TestCrossCheckArgon2CLI(t *testing.T) {
	bin, err := exec.LookPath("argon2")
	if err != nil {
		t.Fatal("argon2 CLI not found; install it with `apt-get install -y argon2` (make test does)")
	}
	tests := []struct {
		name, pw, salt string
		t, logM, p     int
	}{
		{"basic", "password", "somesalt", 2, 15, 1},
		{"unicode", "pässwörd ☃", "0123456789abcdef", 3, 14, 2},
		{"long", strings.Repeat("x", 100), "saltsaltsalt", 1, 13, 1},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin, tt.salt, "-id",
				"-t", strconv.Itoa(tt.t), "-m", strconv.Itoa(tt.logM), "-p", strconv.Itoa(tt.p), "-l", "32", "-e")
			cmd.Stdin = strings.NewReader(tt.pw)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("argon2 CLI: %v", err)
			}
			cli := strings.TrimSpace(string(out))
			ok, err := Verify(tt.pw, cli)
			if err != nil || !ok {
				t.Fatalf("Verify(CLI hash %q) = %v, %v", cli, ok, err)
			}
			if ok, _ := Verify(tt.pw+"x", cli); ok {
				t.Fatal("wrong password verified against CLI hash")
			}
			p := Params{Time: uint32(tt.t), MemoryKiB: 1 << tt.logM, Threads: uint8(tt.p)}
			ours := encode(p, []byte(tt.salt), argon2.IDKey([]byte(tt.pw), []byte(tt.salt), p.Time, p.MemoryKiB, p.Threads, KeyLen))
			if ours != cli {
				t.Fatalf("encoding differs:\n ours %s\n cli  %s", ours, cli)
			}
		})
	}
}

func TestHasher(t *testing.T) {
	h := NewHasher(testParams, 2)
	if h.Params() != testParams {
		t.Fatalf("Params = %+v", h.Params())
	}
	ctx := t.Context()
	phc, err := h.Hash(ctx, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := h.Verify(ctx, "pw", phc); err != nil || !ok {
		t.Fatalf("Verify = %v, %v", ok, err)
	}
	if ok, err := h.Verify(ctx, "nope", phc); err != nil || ok {
		t.Fatalf("Verify wrong = %v, %v", ok, err)
	}
	h.VerifyDummy(ctx, "pw")
}

func TestHasherBoundsConcurrency(t *testing.T) {
	const slots = 2
	h := NewHasher(testParams, slots)
	// Fill every slot by hand, then check a caller waits and gives up
	// with ErrUnavailable when its context ends.
	for range slots {
		h.slots <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := h.Hash(ctx, "pw"); !errors.Is(err, sdk.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hash with full slots = %v, want ErrUnavailable and DeadlineExceeded", err)
	}
	if _, err := h.Verify(ctx, "pw", "x"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Verify with full slots = %v, want ErrUnavailable", err)
	}
	start := time.Now()
	h.VerifyDummy(ctx, "pw") // must return promptly, ctx is done
	if time.Since(start) > time.Second {
		t.Fatal("VerifyDummy ignored a done context")
	}
	for range slots {
		h.release()
	}

	// Under load, never more than `slots` hashes run at once.
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := h.acquire(t.Context()); err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			running.Add(-1)
			h.release()
		})
	}
	wg.Wait()
	if peak.Load() > slots {
		t.Fatalf("peak concurrency %d > %d", peak.Load(), slots)
	}
}

func TestVerifyDummyCostsLikeVerify(t *testing.T) {
	h := NewHasher(Params{Time: 2, MemoryKiB: 19456, Threads: 1}, 1)
	phc, err := h.Hash(t.Context(), "pw")
	if err != nil {
		t.Fatal(err)
	}
	measure := func(f func()) time.Duration {
		best := time.Duration(1 << 62)
		for range 5 {
			s := time.Now()
			f()
			if d := time.Since(s); d < best {
				best = d
			}
		}
		return best
	}
	real := measure(func() { _, _ = h.Verify(t.Context(), "wrong", phc) })
	dummy := measure(func() { h.VerifyDummy(t.Context(), "wrong") })
	// Generous bounds: this guards against a dummy that does no work, not
	// against scheduling noise.
	if dummy < real/4 || dummy > real*4 {
		t.Fatalf("VerifyDummy took %v, Verify took %v", dummy, real)
	}
}
