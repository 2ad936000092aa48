package username

import (
	"errors"
	"strings"
	"testing"

	"github.com/metacircular/mcias/sdk"
)

func TestCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"plain", "alice", "alice", true},
		{"upper", "Alice", "alice", true},
		{"digits", "0day", "0day", true},
		{"separators", "j.doe_x-y", "j.doe_x-y", true},
		{"fullwidth", "ＡＬＩＣＥ", "alice", true},
		{"kelvin sign", "\u212Aate", "kate", true},
		{"ligature", "\uFB01n", "fin", true},
		{"one char", "a", "a", true},
		{"max", strings.Repeat("a", 64), strings.Repeat("a", 64), true},
		{"empty", "", "", false},
		{"too long", strings.Repeat("a", 65), "", false},
		{"huge", strings.Repeat("a", 10000), "", false},
		{"leading dot", ".alice", "", false},
		{"leading dash", "-alice", "", false},
		{"space", "al ice", "", false},
		{"at", "alice@example.com", "", false},
		{"accent", "alicé", "", false},
		{"cyrillic a", "\u0430lice", "", false},
		{"turkish dotted I", "\u0130van", "ivan", true},
		{"zero width", "al\u200bice", "", false},
		{"newline", "alice\n", "", false},
		{"nul", "alice\x00", "", false},
		{"invalid utf8", "al\xffice", "", false},
	}
	for _, tt := range tests {
		t.Run("case="+tt.name, func(t *testing.T) {
			got, err := Canonical(tt.in)
			if tt.ok {
				if err != nil || got != tt.want {
					t.Fatalf("Canonical(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Canonical(%q) = %q, %v; want ErrInvalidArgument", tt.in, got, err)
			}
			var ue *Error
			if !errors.As(err, &ue) || !strings.Contains(ue.Msg, "1 to 64 characters") {
				t.Fatalf("error does not explain the rule: %v", err)
			}
			if len(tt.in) > 3 && strings.Contains(err.Error(), tt.in) {
				t.Fatalf("error echoes the input: %v", err)
			}
		})
	}
}

func TestCanonicalIdempotent(t *testing.T) {
	for _, in := range []string{"Alice", "ＢＯＢ", "x.y_z-0"} {
		c, err := Canonical(in)
		if err != nil {
			t.Fatal(err)
		}
		if c2, err := Canonical(c); err != nil || c2 != c {
			t.Fatalf("Canonical(Canonical(%q)) = %q, %v", in, c2, err)
		}
	}
}

func TestSkeleton(t *testing.T) {
	tests := []struct{ a, b string }{
		{"alice", "a1ice"},
		{"alice", "aiice"},
		{"bob", "b0b"},
		{"modern", "rnodern"},
		{"modern", "modem"},
		{"wendy", "vvendy"},
		{"j.doe", "j_doe"},
		{"j.doe", "j-doe"},
		{"j.doe", "j._-doe"},
		{"l1i", "lll"},
	}
	for _, tt := range tests {
		t.Run("case="+tt.a+"~"+tt.b, func(t *testing.T) {
			if Skeleton(tt.a) != Skeleton(tt.b) {
				t.Fatalf("Skeleton(%q) = %q, Skeleton(%q) = %q; want equal", tt.a, Skeleton(tt.a), tt.b, Skeleton(tt.b))
			}
		})
	}
	distinct := []struct{ a, b string }{
		{"alice", "alicia"},
		{"jdoe", "j.doe"},
		{"bob", "bab"},
		{"vvv", "ww"},
	}
	for _, tt := range distinct {
		if Skeleton(tt.a) == Skeleton(tt.b) {
			t.Errorf("Skeleton(%q) == Skeleton(%q) = %q; want distinct", tt.a, tt.b, Skeleton(tt.a))
		}
	}
	if got := Skeleton("r1n0-_.vv"); got != "rlno.w" {
		t.Errorf("Skeleton = %q", got)
	}
}
