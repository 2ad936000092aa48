// Package username defines the one canonical form of a username and the
// look-alike key that stops two confusable usernames from coexisting.
//
// Canonical form: Unicode NFKC, then lower case, then it must match
// ^[a-z0-9][a-z0-9._-]{0,63}$ (1 to 64 characters, starting with a letter
// or digit). NFKC folds compatibility forms first, so fullwidth "ＡＬＩＣＥ"
// and the Kelvin sign become plain ASCII before the check instead of being
// rejected or, worse, kept as a distinct name.
package username

import (
	"regexp"
	"strings"

	"golang.org/x/text/unicode/norm"

	"github.com/metacircular/mcias/sdk"
)

// MaxLen is the longest canonical username in characters (all ASCII).
const MaxLen = 64

// maxInputBytes bounds the raw input before normalisation: every
// canonical character comes from at least one input rune of at most 4
// bytes, so anything longer can never be valid, and NFKC of a huge input
// is not work an unauthenticated caller should be able to demand.
const maxInputBytes = 4 * MaxLen

var valid = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// rule is the client-facing explanation of the canonical form.
const rule = "a username is 1 to 64 characters from a-z, 0-9, '.', '_' and '-', and starts with a letter or digit (letters are matched case-insensitively)"

// Error is a client-safe explanation of why a username was refused. It
// wraps sdk.ErrInvalidArgument.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return sdk.ErrInvalidArgument }

// Canonical returns the canonical form of s, or an *Error (wrapping
// sdk.ErrInvalidArgument) whose message is safe to show to the client and
// states the rule. The message never repeats s.
func Canonical(s string) (string, error) {
	if s == "" {
		return "", &Error{Msg: "username is empty: " + rule}
	}
	if len(s) > maxInputBytes {
		return "", &Error{Msg: "username is too long: " + rule}
	}
	c := strings.ToLower(norm.NFKC.String(s))
	if !valid.MatchString(c) {
		if len(c) > MaxLen {
			return "", &Error{Msg: "username is too long: " + rule}
		}
		return "", &Error{Msg: "username has characters that are not allowed: " + rule}
	}
	return c, nil
}

// Skeleton returns the look-alike key of a canonical username: '0' -> 'o',
// '1' and 'i' -> 'l', "rn" -> "m", "vv" -> "w", and every run of '.', '_'
// and '-' -> '.'. Two accounts whose skeletons are equal cannot coexist,
// so "a1ice", "alice" and "aiice" are one name, as are "j.doe" and "j_doe".
func Skeleton(canonical string) string {
	b := make([]byte, 0, len(canonical))
	for i := 0; i < len(canonical); i++ {
		c := canonical[i]
		switch c {
		case '0':
			c = 'o'
		case '1', 'i':
			c = 'l'
		case '.', '_', '-':
			if len(b) > 0 && b[len(b)-1] == '.' {
				continue
			}
			c = '.'
		}
		b = append(b, c)
	}
	s := strings.ReplaceAll(string(b), "rn", "m")
	return strings.ReplaceAll(s, "vv", "w")
}
