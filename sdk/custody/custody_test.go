package custody_test

import (
	"encoding/base64"
	"testing"

	"github.com/metacircular/mcias/sdk/custody"
)

// RFC 8037 appendix A.3: the thumbprint of the example Ed25519 key.
func TestThumbprintRFC8037(t *testing.T) {
	x, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	const want = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
	if got := custody.Thumbprint(x); got != want {
		t.Fatalf("Thumbprint = %s, want %s", got, want)
	}
}
