package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
)

// decodeJSON reads the request body strictly into dst: content type
// application/json, at most the configured size, no unknown fields, no
// trailing data. On failure it has already written the error response
// and returns false.
func decodeJSON(c *gin.Context, dst any) bool {
	return decode(c, dst, false)
}

// decodeOptionalJSON is decodeJSON for routes whose body may be empty
// (logout, renew, TOTP enrollment). A non-empty body must still be a
// strict JSON object.
func decodeOptionalJSON(c *gin.Context, dst any) bool {
	return decode(c, dst, true)
}

func decode(c *gin.Context, dst any, optional bool) bool {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			abortJSON(c, http.StatusRequestEntityTooLarge, "payload_too_large",
				fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit))
			return false
		}
		badRequest(c, "could not read the request body")
		return false
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	if !isJSONContentType(c.GetHeader("Content-Type")) {
		abortJSON(c, http.StatusUnsupportedMediaType, "unsupported_media_type",
			"request bodies must be sent as Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		badRequest(c, jsonErrorSentence(err))
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		badRequest(c, "the request body must hold exactly one JSON object")
		return false
	}
	if msg := checkKeys(body, dst); msg != "" {
		badRequest(c, msg)
		return false
	}
	return true
}

// checkKeys closes two gaps of encoding/json, which matches field names
// case-insensitively and keeps the last of duplicate keys: either lets a
// proxy or log that reads the body see other values than we do. It
// rejects duplicate keys in any object and, in the top-level object, any
// key that is not exactly a field name of dst. body is known to be one
// well-formed JSON value. It returns "" or the sentence to answer with.
func checkKeys(body []byte, dst any) string {
	names := fieldNames(dst)
	if keys, ok := flatKeys(body); ok {
		// The common case (every request body of the API is a flat
		// object): checked without a second full JSON decode.
		for i, k := range keys {
			if slices.Contains(keys[:i], k) {
				return "duplicate field " + quoteKey(k)
			}
			if !names[k] {
				return "unknown field " + quoteKey(k) + " (field names are case-sensitive)"
			}
		}
		return ""
	}
	return checkKeysSlow(body, names)
}

// checkKeysSlow is checkKeys for any JSON value, token by token.
func checkKeysSlow(body []byte, names map[string]bool) string {
	type frame struct {
		keys      map[string]bool // nil for an array
		expectKey bool
	}
	var stack []*frame
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "" // io.EOF: the whole value was read
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.keys != nil && top.expectKey && tok != json.Delim('}') {
			key, _ := tok.(string)
			if top.keys[key] {
				return "duplicate field " + quoteKey(key)
			}
			if len(stack) == 1 && !names[key] {
				return "unknown field " + quoteKey(key) + " (field names are case-sensitive)"
			}
			top.keys[key] = true
			top.expectKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{keys: map[string]bool{}, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended; the enclosing object expects its next key.
		if len(stack) > 0 {
			if p := stack[len(stack)-1]; p.keys != nil {
				p.expectKey = true
			}
		}
	}
}

func quoteKey(key string) string {
	if show := strconv.Quote(key); len(show) <= 66 {
		return show
	}
	return "with a long name"
}

// fieldNames returns the JSON field names of the struct dst points to,
// computed once per type.
func fieldNames(dst any) map[string]bool {
	t := reflect.TypeOf(dst)
	if v, ok := fieldNameCache.Load(t); ok {
		return v.(map[string]bool)
	}
	names := map[string]bool{}
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		for f := range t.Elem().Fields() {
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				names[name] = true
			}
		}
	}
	fieldNameCache.Store(t, names)
	return names
}

var fieldNameCache sync.Map // reflect.Type -> map[string]bool

// flatKeys returns the keys of body, in order, when body is a flat JSON
// object: scalar values only and no backslash anywhere, so every key is
// its raw bytes. Anything else (nesting, escapes) reports !ok and is left
// to the full check. body is known to be well-formed JSON.
func flatKeys(body []byte) (keys []string, ok bool) {
	if bytes.IndexByte(body, '\\') >= 0 {
		return nil, false
	}
	i := 0
	ws := func() {
		for i < len(body) && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r') {
			i++
		}
	}
	str := func() (string, bool) { // at an opening quote
		end := bytes.IndexByte(body[i+1:], '"')
		if end < 0 {
			return "", false
		}
		s := string(body[i+1 : i+1+end])
		i += end + 2
		return s, true
	}
	ws()
	if i >= len(body) || body[i] != '{' {
		return nil, false
	}
	i++
	for {
		ws()
		if i < len(body) && body[i] == '}' && len(keys) == 0 {
			return keys, true
		}
		if i >= len(body) || body[i] != '"' {
			return nil, false
		}
		k, ok := str()
		if !ok {
			return nil, false
		}
		keys = append(keys, k)
		ws()
		if i >= len(body) || body[i] != ':' {
			return nil, false
		}
		i++
		ws()
		switch {
		case i >= len(body), body[i] == '{', body[i] == '[':
			return nil, false
		case body[i] == '"':
			if _, ok := str(); !ok {
				return nil, false
			}
		default:
			for i < len(body) && !strings.ContainsRune(",} \t\n\r", rune(body[i])) {
				i++
			}
		}
		ws()
		if i >= len(body) {
			return nil, false
		}
		switch body[i] {
		case ',':
			i++
		case '}':
			return keys, true
		default:
			return nil, false
		}
	}
}

func isJSONContentType(v string) bool {
	mt, params, err := mime.ParseMediaType(v)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// jsonErrorSentence turns a decoding error into a sentence that names the
// problem without echoing the body.
func jsonErrorSentence(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be of type %s", typ.Field, typ.Type)
		}
		return "the request body must be a JSON object"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the request body is empty or truncated"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if len(name) > 66 {
			return "the request body has an unknown field"
		}
		return "unknown field " + name
	default:
		return "malformed JSON"
	}
}
