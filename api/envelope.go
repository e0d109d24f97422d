package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/crispy-enigma/crispy/wire"
)

// envelope is the JSON shape of every JSON response (wire.Envelope).
type envelope = wire.Envelope

type errorBody = wire.ErrorBody

// ok writes a success envelope.
func ok(c echo.Context, status int, data any) error {
	return c.JSON(status, envelope{OK: true, Data: data, TraceID: traceID(c)})
}

// okFlushed writes a success envelope with its Content-Length and flushes it, so the client has a
// complete response while the handler still does work that need not delay it.
func okFlushed(c echo.Context, status int, data any) error {
	body, err := json.Marshal(envelope{OK: true, Data: data, TraceID: traceID(c)})
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	h.Set(echo.HeaderContentLength, strconv.Itoa(len(body)))
	c.Response().WriteHeader(status)
	if _, err := c.Response().Write(body); err != nil {
		return nil // the client left; nothing else to tell it
	}
	c.Response().Flush()
	return nil
}

// writeError writes a failure envelope; the HTTPErrorHandler is its only caller besides the
// middleware that must answer before routing.
func writeError(c echo.Context, e *Error) error {
	if c.Request().Method == http.MethodHead {
		return c.NoContent(e.Status)
	}
	return c.JSON(e.Status, envelope{OK: false, Error: &errorBody{Code: e.Code, Message: e.Message}, TraceID: traceID(c)})
}
