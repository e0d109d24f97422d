// Package observe sets up structured logging (zerolog), Prometheus metrics and trace IDs.
package observe

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// LogOptions configure NewLogger.
type LogOptions struct {
	Level  string // debug|info|warn|error
	Format string // json|console|auto
	Node   string
	Out    io.Writer // default os.Stdout
}

// NewLogger returns the process logger: one JSON object per line with docs/api.md's field names
// (timestamp, level, event), or a console writer when stdout is a terminal and the format is auto.
func NewLogger(o LogOptions) (zerolog.Logger, error) {
	out := o.Out
	if out == nil {
		out = os.Stdout
	}
	lvl := zerolog.InfoLevel
	if o.Level != "" {
		l, err := zerolog.ParseLevel(strings.ToLower(o.Level))
		if err != nil {
			return zerolog.Nop(), fmt.Errorf("log level %q: %w", o.Level, err)
		}
		lvl = l
	}
	switch o.Format {
	case "", "auto":
		if f, ok := out.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
		}
	case "console":
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly}
	case "json":
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: want json, console or auto", o.Format)
	}
	ctx := zerolog.New(out).Level(lvl).With().Timestamp()
	if o.Node != "" {
		ctx = ctx.Str("node", o.Node)
	}
	return ctx.Logger(), nil
}

func init() {
	// the README's "Logs" names the fields timestamp, level and event. zerolog keeps these as
	// package settings, so they are set once here rather than per logger.
	zerolog.TimestampFieldName = "timestamp"
	zerolog.MessageFieldName = "event"
	zerolog.TimeFieldFormat = time.RFC3339Nano
}
