package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
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
	return true
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
