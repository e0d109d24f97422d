package speech

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// WAVInfo describes a PCM WAV file.
type WAVInfo struct {
	SampleRate    int
	Channels      int
	BitsPerSample int
	DataOffset    int // byte offset of the sample data
	DataSize      int // bytes of sample data
}

// Duration is the playing time of the sample data.
func (w WAVInfo) Duration() time.Duration {
	bytesPerSec := w.SampleRate * w.Channels * w.BitsPerSample / 8
	if bytesPerSec == 0 {
		return 0
	}
	return time.Duration(int64(w.DataSize) * int64(time.Second) / int64(bytesPerSec))
}

// FixWAVHeader parses a RIFF/WAVE file whose size fields may be wrong — espeak-ng writing to a pipe
// cannot seek back and leaves 0x7ffff… placeholders — and rewrites the RIFF and data sizes in place to
// the true sizes: the data chunk runs to the end of b. It returns the corrected header's facts.
func FixWAVHeader(b []byte) (WAVInfo, error) {
	var info WAVInfo
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return info, errors.New("not a RIFF/WAVE file")
	}
	off := 12
	for off+8 <= len(b) {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
		body := off + 8
		switch id {
		case "fmt ":
			if size < 16 || body+16 > len(b) {
				return info, errors.New("short fmt chunk")
			}
			if format := binary.LittleEndian.Uint16(b[body:]); format != 1 {
				return info, fmt.Errorf("WAV format %d is not PCM", format)
			}
			info.Channels = int(binary.LittleEndian.Uint16(b[body+2:]))
			info.SampleRate = int(binary.LittleEndian.Uint32(b[body+4:]))
			info.BitsPerSample = int(binary.LittleEndian.Uint16(b[body+14:]))
		case "data":
			if info.SampleRate == 0 {
				return info, errors.New("data chunk before fmt chunk")
			}
			info.DataOffset = body
			info.DataSize = len(b) - body
			// A sample frame is never split: drop a trailing partial frame.
			if frame := info.Channels * info.BitsPerSample / 8; frame > 0 {
				info.DataSize -= info.DataSize % frame
			}
			binary.LittleEndian.PutUint32(b[off+4:], uint32(info.DataSize))
			binary.LittleEndian.PutUint32(b[4:], uint32(body+info.DataSize-8))
			return info, nil
		}
		if size < 0 || body+size > len(b) {
			return info, fmt.Errorf("chunk %q overruns the file", id)
		}
		off = body + size + size%2
	}
	return info, errors.New("no data chunk")
}
