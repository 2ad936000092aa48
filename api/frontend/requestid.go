package frontend

import (
	"crypto/rand"
	"encoding/hex"
)

// RequestID returns the client's ID when it is well formed, else a new
// random one.
func RequestID(fromClient string) string {
	if ValidRequestID(fromClient) {
		return fromClient
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ValidRequestID accepts short IDs of safe characters only, so a client
// cannot inject text into logs or audit events through it.
func ValidRequestID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
