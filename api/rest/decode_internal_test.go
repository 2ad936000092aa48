package rest

import "testing"

// TestFlatKeysAgreesWithTheFullCheck: the fast path for flat objects
// answers exactly as the token-by-token check does.
func TestFlatKeysAgreesWithTheFullCheck(t *testing.T) {
	type body struct {
		Token    string `json:"token"`
		Audience string `json:"audience,omitempty"`
		N        int    `json:"n"`
	}
	names := fieldNames(&body{})
	for _, b := range []string{
		`{}`, ` { } `, `{"token":"x"}`, `{"token":"x","audience":"a"}`, `{"token":"x","token":"y"}`,
		`{"Token":"x"}`, `{"token":"x","n":12}`, `{"n":-1.5e3,"token":""}`, `{"n":null}`, `{"n":true}`,
		"{\n\t\"token\" : \"a b,c}\" ,\r\n \"audience\":\"\"\n}", `{"other":1}`, `{"token":"x","n":1,"n":2}`,
		`{"token":"x","nested":{"a":1}}`, `{"token":["x"]}`, `{"tok\u0065n":"x"}`, `{"token":"x\"y"}`,
	} {
		fast, ok := flatKeys([]byte(b))
		got := checkKeys([]byte(b), &body{})
		if want := checkKeysSlow([]byte(b), names); got != want {
			t.Errorf("%s: checkKeys = %q, the full check says %q (fast path %v %q)", b, got, want, ok, fast)
		}
	}
}
