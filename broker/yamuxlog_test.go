package broker

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestYamuxLoggerLevels: yamux's lines keep their level (an [ERR] is a
// warning, a [WARN] is info), except those that are no fault of the
// peer's: a write that lost the race with this side's own close of the
// connection, and the read guard's refusals (reported by the guard).
func TestYamuxLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	y := yamuxLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	for _, c := range []struct{ msg, level string }{
		{"[ERR] yamux: Failed to read header: connection reset by peer", "WARN"},
		{"[WARN] yamux: frame for missing stream", "INFO"},
		{"[ERR] yamux: Failed to write header: write tcp 127.0.0.1:48716->127.0.0.1:40757: use of closed network connection", "DEBUG"},
		{"[ERR] yamux: Failed to read header: " + ErrProtocol.Error() + ": too many streams", "DEBUG"},
	} {
		buf.Reset()
		y.Printf("%s", c.msg)
		assert.Contains(t, buf.String(), "level="+c.level, c.msg)
	}
}
