package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"
)

// decodeJSON reads one JSON value from the request body into v. Malformed JSON is 400
// invalid_json; a value of the wrong type is 400 invalid_request naming the field; a body over the
// size limit is 413. Unknown fields are ignored (docs/api.md "Bad input").
func decodeJSON(c echo.Context, v any) error {
	dec := json.NewDecoder(c.Request().Body)
	err := dec.Decode(v)
	if err == nil {
		// One value only: trailing garbage is malformed JSON, not something to ignore.
		if _, terr := dec.Token(); terr != io.EOF {
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				return errPayloadTooLarge(mbe.Limit)
			}
			return NewError(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON: unexpected data after the JSON value")
		}
		return nil
	}
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return errPayloadTooLarge(mbe.Limit)
	case errors.Is(err, ErrBodyTooSlow):
		return asError(err)
	case errors.Is(err, io.EOF):
		return NewError(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON: the request body is empty")
	case errors.As(err, &se):
		return NewError(http.StatusBadRequest, CodeInvalidJSON, fmt.Sprintf("malformed JSON at byte %d", se.Offset))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return errInvalidRequest("the request body must be a JSON object")
		}
		return errInvalidRequest("%s: must be %s", field, jsonKind(te.Type.Kind().String()))
	default:
		return NewError(http.StatusBadRequest, CodeInvalidJSON, "malformed JSON")
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "int", "int64", "int32", "uint", "uint64", "uint32":
		return "an integer"
	case "float64", "float32":
		return "a number"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr", "interface":
		return "an object"
	}
	return "of another type"
}
