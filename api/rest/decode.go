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
	"strconv"
	"strings"

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
	names := map[string]bool{}
	if t := reflect.TypeOf(dst); t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		for f := range t.Elem().Fields() {
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
				names[name] = true
			}
		}
	}
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
			show := strconv.Quote(key)
			if len(show) > 66 {
				show = "with a long name"
			}
			if top.keys[key] {
				return "duplicate field " + show
			}
			if len(stack) == 1 && !names[key] {
				return "unknown field " + show + " (field names are case-sensitive)"
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
